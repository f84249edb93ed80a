"""Batching for Whisper: stack log-mels, pad labels with -100, strip the leading SOT.

Two pitfalls this avoids:

* Padding is masked by *length*, never by comparing with ``pad_token_id``: Whisper's
  pad token is ``<|endoftext|>``, so masking every pad id would also mask the EOT
  target and the model would never learn to stop.
* The model builds ``decoder_input_ids`` by shifting the labels right and prepending
  ``decoder_start_token_id`` (``<|startoftranscript|>``). Labels that already start
  with it would give a doubled SOT, so it is stripped here, per sample. Compare with
  ``decoder_start_token_id``, not ``bos_token_id`` (which is ``<|endoftext|>`` in
  Whisper; transformers#29973).

With ``replay`` (a dataset, e.g. pseudo-labelled real speech from ``prepare
pseudo-label``), every batch gets ``replay_per_batch`` more samples drawn from it (seeded,
with replacement across batches), and ``replay_rows`` marks them (a bool tensor the
trainer takes out before the model sees the batch): the model keeps hearing the old
domain in every step, and ``--anchor_rows=replay`` can distil on those rows alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

IGNORE_INDEX = -100  # label value that the cross-entropy loss ignores


class WhisperCollator:
    """Collate ``{"input_features", "labels"}`` samples into a training batch.

    Args:
        decoder_start_token_id: the model's ``decoder_start_token_id``
            (``<|startoftranscript|>``, 50258 for multilingual vocabularies).
        pad_to_multiple_of: round the label length up to a multiple of this (None: no
            rounding).
    """

    def __init__(
        self,
        decoder_start_token_id: int,
        pad_to_multiple_of: int | None = None,
        replay=None,
        replay_per_batch: int = 0,
        seed: int = 0,
    ):
        self.decoder_start_token_id = int(decoder_start_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of
        if replay is not None and (replay_per_batch < 1 or len(replay) == 0):
            raise ValueError("replay needs replay_per_batch >= 1 and a non-empty dataset")
        self.replay = replay
        self.replay_per_batch = replay_per_batch if replay is not None else 0
        self._rng = np.random.default_rng(seed)

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        n_own = len(samples)
        if self.replay_per_batch:
            picks = self._rng.integers(0, len(self.replay), self.replay_per_batch)
            samples = [*samples, *(self.replay[int(i)] for i in picks)]

        features = np.stack([np.asarray(s["input_features"], dtype=np.float32) for s in samples])
        labels = []
        for s in samples:
            ids = list(s["labels"])
            if ids and ids[0] == self.decoder_start_token_id:
                ids = ids[1:]
            labels.append(ids)
        length = max(len(ids) for ids in labels)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        padded = torch.full((len(labels), length), IGNORE_INDEX, dtype=torch.long)
        for i, ids in enumerate(labels):
            padded[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        batch = {"input_features": torch.from_numpy(features), "labels": padded}
        if all("attention_mask" in s for s in samples):  # SpecAugment masks only real audio
            batch["attention_mask"] = torch.from_numpy(
                np.stack([np.asarray(s["attention_mask"], dtype=np.int64) for s in samples])
            )
        # not tensors: the trainer takes them out before the model sees the batch
        if all("origin" in s for s in samples):
            batch["origins"] = [s["origin"] for s in samples]
        if all("language" in s for s in samples):
            batch["languages"] = [s["language"] for s in samples]
        if self.replay_per_batch:
            rows = torch.zeros(len(samples), dtype=torch.bool)
            rows[n_own:] = True
            batch["replay_rows"] = rows
        return batch
