"""Spread a CTranslate2 Whisper batch over one-thread replicas on a CPU.

faster-whisper's ``BatchedInferencePipeline`` hands CTranslate2 one batch at a time: one
``encode`` of all its windows, then one ``generate``. On a CPU, both run on one replica
with ``intra_threads`` threads. Measured on whisper-base int8, 2 cores, the 322 s long
clip (12 windows; ``benchmarks/long_audio.py``):

- a batch of 8 windows encodes at about 0.55 s a window against 0.46 s one at a time
  (the batch's activations and attention maps outgrow the caches);
- a greedy decoding step costs 18 ms at batch 4 and 34 ms at batch 12 on 2 threads:
  most of a step is fixed cost, not arithmetic.

:class:`ReplicaSplit` wraps the model so that the same pipeline encodes each window as
its own job and splits ``generate`` into one part per replica; with one thread per
replica the replicas run side by side without synchronising. CTranslate2 shares the
weights between the replicas of one device, so the replicas add no model memory.
Each window is encoded, and each sequence decoded, exactly as before; only where it runs
changes. A batch of one window (one short clip) gains nothing from replicas and would run
on one thread: it goes to the ``alone`` model with all the threads instead (test.wav in
``benchmarks/inference_speed.py``: RTF 0.153 on a replica against 0.106 sequential).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _parts(size: int, parts: int) -> list[tuple[int, int]]:
    """``[start, end)`` of ``parts`` contiguous, nearly equal slices of ``range(size)``."""
    parts = max(1, min(parts, size))
    bounds = [round(i * size / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


class ReplicaSplit:
    """A ``ctranslate2.models.Whisper`` whose batched calls use all its replicas.

    ``encode`` encodes one window per job; ``generate`` runs one contiguous part of the
    batch per replica (CTranslate2's asynchronous calls) and returns the results in the
    batch's order. Everything else (``detect_language``, ``align``, attributes) goes to
    the wrapped model as it is.

    Args:
        model: a CTranslate2 Whisper on the CPU.
        workers: its number of replicas (``inter_threads``).
        alone: the same weights with all the threads on one job, for a batch of one
            (default: ``model``).
    """

    def __init__(self, model, workers: int, alone=None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._model = model
        self._alone = model if alone is None else alone
        self.workers = workers

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def encode(self, features, to_cpu: bool = False):
        import ctranslate2

        batch = np.asarray(features)
        if len(batch) < 2:
            return self._alone.encode(features, to_cpu=to_cpu)
        if self.workers < 2:
            return self._model.encode(features, to_cpu=to_cpu)

        def one(i: int) -> np.ndarray:
            window = ctranslate2.StorageView.from_array(np.ascontiguousarray(batch[i : i + 1]))
            return np.asarray(self._model.encode(window, to_cpu=to_cpu))

        with ThreadPoolExecutor(self.workers) as pool:
            encoded = np.concatenate(list(pool.map(one, range(len(batch)))))
        return ctranslate2.StorageView.from_array(encoded)

    def generate(self, features, prompts, **kwargs):
        import ctranslate2

        batch = np.asarray(features)
        if len(batch) < 2 and not kwargs.get("asynchronous"):
            return self._alone.generate(features, prompts, **kwargs)
        if len(batch) < 2 or self.workers < 2 or kwargs.get("asynchronous"):
            return self._model.generate(features, prompts, **kwargs)
        pending = [
            self._model.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(batch[start:end])),
                prompts[start:end],
                asynchronous=True,
                **kwargs,
            )
            for start, end in _parts(len(batch), self.workers)
        ]
        return [result.result() for part in pending for result in part]
