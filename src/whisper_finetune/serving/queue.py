"""A bounded pool of inference workers: admission, cancellation, a wait estimate.

Inference never runs on the event loop: each admitted request becomes one job on a
thread pool of ``workers`` threads (CTranslate2 runs that many decodes on one loaded
model in parallel). At most ``workers + max_queue`` jobs are admitted at once; the next
request is refused at once (HTTP 429) with a ``Retry-After`` estimated from recent job
times. A job's slot is freed when it ends, fails, or is cancelled because its client
went away (a queued job never starts; a running one stops at its next segment).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class QueueFull(Exception):
    """No slot is free; ``retry_after`` is the estimated wait in whole seconds."""

    def __init__(self, retry_after: int, capacity: int) -> None:
        super().__init__(f"the server is busy ({capacity} requests in progress or queued)")
        self.retry_after = retry_after
        self.capacity = capacity


class Cancelled(Exception):
    """The job was stopped because its client disconnected."""


class WorkQueue:
    """``workers`` threads and room for ``max_queue`` waiting jobs.

    Args:
        workers: jobs that run at the same time (at least 1).
        max_queue: jobs that may wait for a worker (at least 0).
    """

    def __init__(self, workers: int = 1, max_queue: int = 8) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.workers = workers
        self.max_queue = max_queue
        self.capacity = workers + max_queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="whisper-worker")
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._job_seconds = 2.0  # moving average of a job's duration, seconds
        self.completed = 0
        self.cancelled = 0

    def stats(self) -> dict[str, int]:
        """Jobs running and waiting now, the limits, jobs done and jobs cut short so far."""
        with self._lock:
            return {
                "running": self._running,
                "queued": self._admitted - self._running,
                "workers": self.workers,
                "max_queue": self.max_queue,
                "completed": self.completed,
                "cancelled": self.cancelled,
            }

    def full(self) -> bool:
        with self._lock:
            return self._admitted >= self.capacity

    def retry_after(self) -> int:
        """Seconds until a slot is likely to be free (at least 1)."""
        with self._lock:
            return self._retry_after_locked()

    def submit(self, job: Callable[[threading.Event], Any]) -> tuple[Future, threading.Event]:
        """Admit ``job`` (called in a worker with a cancel event) or raise :class:`QueueFull`.

        Returns:
            the job's future and the event that asks it to stop. Cancelling the future
            before it starts, or the job returning or raising, frees the slot.
        """
        with self._lock:
            if self._admitted >= self.capacity:
                raise QueueFull(self._retry_after_locked(), self.capacity)
            self._admitted += 1
        cancel = threading.Event()

        def run():
            if cancel.is_set():
                raise Cancelled("client disconnected before the job started")
            with self._lock:
                self._running += 1
            start = time.monotonic()
            try:
                return job(cancel)
            except Cancelled:
                with self._lock:
                    self.cancelled += 1
                raise
            finally:
                elapsed = time.monotonic() - start
                with self._lock:
                    self._running -= 1
                    self.completed += 1
                    self._job_seconds = 0.8 * self._job_seconds + 0.2 * elapsed

        try:
            future = self._executor.submit(run)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _f: self._release())
        return future, cancel

    def _retry_after_locked(self) -> int:
        waves = max(1, self._admitted - self.workers + 1) / self.workers
        return max(1, math.ceil(self._job_seconds * waves))

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
