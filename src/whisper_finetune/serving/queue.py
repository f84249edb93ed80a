"""A bounded pool of inference workers: admission, cancellation, a wait estimate.

Inference never runs on the event loop: each admitted request becomes one job on a
thread pool of ``workers`` threads (CTranslate2 runs that many decodes on one loaded
model in parallel). At most ``workers + max_queue`` jobs are admitted at once; the next
request is refused at once (HTTP 429) with a ``Retry-After`` estimated from recent job
times. A job's slot is freed when it ends, fails, or is cancelled because its client
went away (a queued job never starts; a running one stops at its next segment).

The model itself is shared through ``workers`` *decoding slots*: an ordinary job holds
one while it runs. A batched job (``submit(..., batched=True)``) waits in its own thread
and hands its clip to the :class:`Batcher`, which decodes the clips of concurrent jobs as
one batch on one slot: while a batch decodes, the next requests gather, and the first of
them to find a free slot decodes them all together (CTranslate2 decodes a batch of
windows in little more time than one).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a waiting job checks its cancel event


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
        # batched jobs wait for their batch in threads of their own (at most every slot)
        self._gather = ThreadPoolExecutor(self.capacity, thread_name_prefix="whisper-batch")
        self._slots = threading.Semaphore(workers)
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._job_seconds = 2.0  # moving average of a job's duration, seconds
        self.completed = 0
        self.cancelled = 0
        self.batches = 0  # decodes of two jobs or more together
        self.batched_jobs = 0  # jobs decoded in those
        self.largest_batch = 0

    def stats(self) -> dict[str, int]:
        """Jobs running and waiting now, the limits, jobs done and jobs cut short so far,
        and the batches: how many, the jobs in them, the largest."""
        with self._lock:
            return {
                "running": self._running,
                "queued": self._admitted - self._running,
                "workers": self.workers,
                "max_queue": self.max_queue,
                "completed": self.completed,
                "cancelled": self.cancelled,
                "batches": self.batches,
                "batched_jobs": self.batched_jobs,
                "largest_batch": self.largest_batch,
            }

    @contextlib.contextmanager
    def slot(self, cancel: threading.Event | None = None, jobs: int = 1) -> Iterator[None]:
        """Hold one decoding slot (``jobs`` jobs counted as running) until the block ends.

        Raises:
            Cancelled: ``cancel`` was set before a slot was free.
        """
        while not self._slots.acquire(timeout=POLL_SECONDS):
            if cancel is not None and cancel.is_set():
                raise Cancelled("client disconnected before the job started")
        try:
            with self.running_as(jobs):
                yield
        finally:
            self._slots.release()

    def try_slot(self) -> bool:
        """Take a decoding slot if one is free now (give it back with :meth:`free_slot`)."""
        return self._slots.acquire(blocking=False)

    def free_slot(self) -> None:
        self._slots.release()

    @contextlib.contextmanager
    def running_as(self, jobs: int) -> Iterator[None]:
        """Count ``jobs`` more jobs as running (being decoded) until the block ends."""
        with self._lock:
            self._running += jobs
        try:
            yield
        finally:
            with self._lock:
                self._running -= jobs

    def note_seconds(self, seconds: float) -> None:
        """Add one job's decoding time to the moving average behind ``Retry-After``."""
        with self._lock:
            self._job_seconds = 0.8 * self._job_seconds + 0.2 * seconds

    def note_batch(self, size: int) -> None:
        """Count a batch of ``size`` jobs decoded together (two or more)."""
        with self._lock:
            self.batches += 1
            self.batched_jobs += size
            self.largest_batch = max(self.largest_batch, size)

    def full(self) -> bool:
        with self._lock:
            return self._admitted >= self.capacity

    def retry_after(self) -> int:
        """Seconds until a slot is likely to be free (at least 1)."""
        with self._lock:
            return self._retry_after_locked()

    def submit(
        self, job: Callable[[threading.Event], Any], batched: bool = False
    ) -> tuple[Future, threading.Event]:
        """Admit ``job`` (called in a worker with a cancel event) or raise :class:`QueueFull`.

        An ordinary job runs holding a decoding slot. A ``batched`` job starts at once in
        a thread of its own and takes slots itself (through a :class:`Batcher` or
        :meth:`slot`); its future cannot be cancelled, its cancel event stops it.

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
            start = time.monotonic()
            try:
                if batched:
                    return job(cancel)
                with self.slot(cancel):
                    return job(cancel)
            except Cancelled:
                with self._lock:
                    self.cancelled += 1
                raise
            finally:
                with self._lock:
                    self.completed += 1
                if not batched:  # a batched job's wait is not its cost: the Batcher times it
                    self.note_seconds(time.monotonic() - start)

        try:
            future = (self._gather if batched else self._executor).submit(run)
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
        self._gather.shutdown(wait=False, cancel_futures=True)


@dataclass(eq=False)
class _Item:
    key: Hashable
    payload: Any
    alone: Callable[[], Any] | None
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    extra: dict = field(default_factory=dict)


class Batcher:
    """Decode the clips of concurrent jobs together, on the :class:`WorkQueue`'s slots.

    A job calls :meth:`run` from its own thread with a key (jobs batch only with jobs of
    the same key: the same decoding options) and its payload. The first waiting job to
    find a free decoding slot takes every pending job of the oldest job's key (at most
    ``max_batch``) and decodes them with one ``decode(key, payloads)`` call; the others
    wait for their result. A batch of one job is decoded by that job's ``alone``
    (its ordinary path) when it has one. When a batch fails, each of its jobs is decoded
    again on its own, so that one bad job fails alone.

    Args:
        queue: the pool whose slots and batch counters are used.
        decode: ``(key, payloads) -> results``, one result per payload, in order.
        max_batch: the most jobs in one batch.
        gather_seconds: how long a batch waits for jobs that were admitted but are
            still reading their audio.
    """

    def __init__(
        self,
        queue: WorkQueue,
        decode: Callable[[Hashable, list[Any]], list[Any]],
        max_batch: int = 16,
        gather_seconds: float = 0.05,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.queue = queue
        self.decode = decode
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        self._cond = threading.Condition()
        self._pending: list[_Item] = []
        self._arriving = 0  # jobs inside :meth:`arriving` that have not reached run()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[dict]:
        """Wrap a job's work before :meth:`run` (reading its audio), so that a batch about
        to start waits a little for it; pass what it yields to :meth:`run` as ``token``."""
        token = {"arriving": True}
        with self._cond:
            self._arriving += 1
        try:
            yield token
        finally:
            self._arrived(token)

    def _arrived(self, token: dict | None) -> None:
        with self._cond:
            if token is not None and token["arriving"]:
                token["arriving"] = False
                self._arriving -= 1
                self._cond.notify_all()

    def run(
        self,
        key: Hashable,
        payload: Any,
        cancel: threading.Event,
        alone: Callable[[], Any] | None = None,
        token: dict | None = None,
    ) -> Any:
        """This job's result, decoded in a batch; raises its own error, or Cancelled."""
        item = _Item(key, payload, alone)
        with self._cond:
            self._pending.append(item)
        self._arrived(token)
        try:
            while True:
                with self._cond:
                    if item.done:
                        break
                    if cancel.is_set():
                        raise Cancelled("client disconnected")
                if self.queue.try_slot():
                    try:
                        self._lead()
                    finally:
                        self.queue.free_slot()
                    continue
                with self._cond:
                    if not item.done:
                        self._cond.wait(POLL_SECONDS)
        finally:
            with self._cond:
                if item in self._pending:
                    self._pending.remove(item)
        if item.error is not None:
            raise item.error
        return item.result

    def _lead(self) -> None:
        """Holding a slot: take a batch of pending jobs and decode it."""
        with self._cond:
            deadline = time.monotonic() + self.gather_seconds
            while (
                self._pending
                and self._arriving > 0
                and len(self._pending) < self.max_batch
                and time.monotonic() < deadline
            ):
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            if not self._pending:
                return
            key = self._pending[0].key
            batch = [item for item in self._pending if item.key == key][: self.max_batch]
            for item in batch:
                self._pending.remove(item)
        start = time.monotonic()
        try:
            with self.queue.running_as(len(batch)):
                self._decode(batch)
        finally:
            self.queue.note_seconds((time.monotonic() - start) / len(batch))
            with self._cond:
                for item in batch:
                    item.done = True
                self._cond.notify_all()

    def _decode(self, batch: list[_Item]) -> None:
        if len(batch) == 1 and batch[0].alone is not None:
            self._settle(batch[0], batch[0].alone)
            return
        try:
            results = self.decode(batch[0].key, [item.payload for item in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            logger.warning("a batch of %d failed (%s); decoding each alone", len(batch), exc)
            for item in batch:
                self._settle(item, lambda item=item: self.decode(item.key, [item.payload])[0])
            return
        if len(batch) > 1:
            self.queue.note_batch(len(batch))
        for item, result in zip(batch, results, strict=True):
            item.result = result

    @staticmethod
    def _settle(item: _Item, work: Callable[[], Any]) -> None:
        try:
            item.result = work()
        except BaseException as exc:  # handed to the job's own thread
            item.error = exc
