"""The bounded worker pool, without a model: admission, refusal, cancellation."""

from __future__ import annotations

import threading

import pytest

from whisper_finetune.serving.queue import Cancelled, QueueFull, WorkQueue


def test_admits_up_to_workers_plus_queue_then_refuses():
    queue = WorkQueue(workers=1, max_queue=1)
    release = threading.Event()
    started = threading.Event()

    def blocking(cancel):
        started.set()
        release.wait(60)
        return "done"

    first, _ = queue.submit(blocking)
    started.wait(60)
    second, _ = queue.submit(lambda cancel: "second")
    assert queue.full() and queue.stats()["running"] == 1 and queue.stats()["queued"] == 1
    with pytest.raises(QueueFull) as info:
        queue.submit(lambda cancel: "third")
    assert info.value.retry_after >= 1 and info.value.capacity == 2
    release.set()
    assert first.result(60) == "done" and second.result(60) == "second"
    third, _ = queue.submit(lambda cancel: "third")
    assert third.result(60) == "third"
    queue.shutdown()


def test_cancelled_jobs_free_their_slots():
    queue = WorkQueue(workers=1, max_queue=1)
    release = threading.Event()
    started = threading.Event()

    def running(cancel):
        started.set()
        while not cancel.wait(0.01):
            pass
        raise Cancelled("client left")

    first, cancel_first = queue.submit(running)
    started.wait(60)
    queued, _ = queue.submit(lambda cancel: release.wait(60))
    assert queued.cancel()  # a queued job that never starts
    cancel_first.set()  # a running job that stops
    with pytest.raises(Cancelled):
        first.result(60)
    assert queue.stats()["cancelled"] == 1
    done, _ = queue.submit(lambda cancel: "ok")
    assert done.result(60) == "ok"
    queue.shutdown()


def test_bad_sizes():
    with pytest.raises(ValueError, match="workers"):
        WorkQueue(workers=0)
    with pytest.raises(ValueError, match="max_queue"):
        WorkQueue(max_queue=-1)
