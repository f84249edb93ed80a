"""Prompt-conditioned training: some samples carry the previous text as a prompt.

Whisper was trained with the text before a window as a prompt::

    <|startofprev|> 前一句的文字 <|startoftranscript|><|zh|><|transcribe|><|notimestamps|> 这一句 <|endoftext|>

and ``--initial_prompt``, ``--hotwords`` and ``condition_on_previous_text`` on long audio
all feed it such a prompt. A fine-tune that never sees one can lose the skill (long-form
decoding with previous-text conditioning then loops or drifts). With ``--prompt_ratio``,
that share of the training samples gets a prompt:

* the record's **own** ``prompt`` field (a manifest record may carry
  ``"prompt": "..."``: the text before it, or its domain's terms), when it has one; else
* the text of the **previous slice of the same recording** (records that are slices,
  ``start_time``/``end_time``, of one audio file, as ``prepare wenetspeech`` and long
  recordings give), when there is one; else
* a few phrases drawn from ``--prompt_file`` (one domain phrase per line: names, terms),
  the way users pass ``--initial_prompt``/``--hotwords``.

The prompt tokens get no loss (label -100): the model learns to *use* a prompt, not to
produce one. The prompt keeps its last tokens (the nearest text, as openai-whisper does),
at most 223 (half the decoder context, less one) and never more than the 448-token
decoder context leaves next to the sample's own label.

The dataset is wrapped (:class:`PromptedDataset` adds ``prompt_ids`` to a share of the
samples, drawn from a generator seeded by ``(seed, epoch, index)`` apart from the one the
dataset's own choices use) and so is the collator (:class:`PromptCollator` builds
``decoder_input_ids`` with the prompt in front and masks it in ``labels``); a batch
without prompts is left exactly as the plain collator makes it.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MAX_PROMPT_TOKENS = 223  # openai-whisper: n_text_ctx // 2 - 1
MAX_DECODER_TOKENS = 448
MAX_GAP_S = 5.0  # a slice further than this after the previous one has no prompt from it
IGNORE_INDEX = -100


def read_phrases(path: str | os.PathLike) -> list[str]:
    """Phrases of a ``--prompt_file``: one per line, blank lines ignored.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if it is not UTF-8 or holds no phrase.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--prompt_file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"--prompt_file {path}: not UTF-8 text ({exc})") from exc
    phrases = [line.strip() for line in lines if line.strip()]
    if not phrases:
        raise ValueError(f"--prompt_file {path} holds no phrase (one per line)")
    return phrases


def scan_prompts(records: Sequence) -> tuple[dict[int, str], dict[int, str]]:
    """One pass over the records (a lazy manifest parses each line once): record index ->
    its own ``prompt`` field, and record index -> the previous slice's text."""
    from whisper_finetune.data.dataset import plain_text

    own = {}
    slices = defaultdict(list)
    for i, record in enumerate(records):
        if record.prompt and record.prompt.strip():
            own[i] = record.prompt.strip()
        if record.start_time is not None:
            slices[record.audio_path].append((record.start_time, record.end_time, i))
    out = {}
    for items in slices.values():
        items.sort()
        for (_, prev_end, j), (start, _, i) in zip(items, items[1:], strict=False):
            if prev_end is None or not 0 <= start - prev_end <= MAX_GAP_S:
                continue
            text = plain_text(records[j]).strip()
            if text:
                out[i] = text
    return own, out


class PromptSource:
    """The prompt text for a training record, or None when it has none: the record's own
    ``prompt`` field first (always, when it has one; no draw), else the previous slice's
    text or phrases (half and half when there are both), else phrases.

    Args:
        records: the training records (the dataset's, same order).
        phrases: domain phrases (``--prompt_file``).
        max_phrases: at most this many phrases make one prompt.
    """

    def __init__(self, records: Sequence, phrases: Sequence[str] = (), max_phrases: int = 5):
        self.own, self.previous = scan_prompts(records)
        self.phrases = list(phrases)
        self.max_phrases = max_phrases

    def __call__(self, index: int, rng: np.random.Generator) -> str | None:
        own = self.own.get(index)
        if own:
            return own
        previous = self.previous.get(index)
        if previous and (not self.phrases or rng.random() < 0.5):
            return previous
        if not self.phrases:
            return None
        n = int(rng.integers(1, min(self.max_phrases, len(self.phrases)) + 1))
        picks = rng.choice(len(self.phrases), size=n, replace=False)
        return "，".join(self.phrases[int(k)] for k in picks)


def prompt_ids(tokenizer, text: str, label_length: int) -> list[int] | None:
    """``<|startofprev|>`` and the prompt's last tokens that fit beside a label of
    ``label_length`` tokens (SOT to EOT) in the decoder context; None when none fit."""
    start = tokenizer.convert_tokens_to_ids("<|startofprev|>")
    ids = tokenizer.encode(" " + text.strip(), add_special_tokens=False)
    # decoder input = startofprev + prompt + label minus its last token
    room = min(MAX_PROMPT_TOKENS, MAX_DECODER_TOKENS - label_length)
    if room < 1 or not ids:
        return None
    return [start, *ids[-room:]]


class PromptedDataset:
    """A training dataset whose samples get ``prompt_ids`` with probability ``ratio``."""

    def __init__(self, dataset, source: PromptSource, tokenizer, ratio: float, seed: int):
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"--prompt_ratio must be in (0, 1], got {ratio}")
        self.dataset = dataset
        self.source = source
        self.tokenizer = tokenizer
        self.ratio = ratio
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):  # records, set_epoch, epoch, ... of the dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        # a generator of its own: the dataset's timestamp and augmentation draws stay as they were
        rng = np.random.default_rng([self.seed, getattr(self.dataset, "epoch", 0), index, 7919])
        if len(sample["labels"]) > 3 and rng.random() < self.ratio:  # not for no-speech
            text = self.source(index, rng)
            if text:
                ids = prompt_ids(self.tokenizer, text, len(sample["labels"]))
                if ids:
                    sample = {**sample, "prompt_ids": ids}
        return sample


class PromptCollator:
    """Wraps a collator: rows whose sample has ``prompt_ids`` get the prompt in front of
    their decoder input, with no loss on it; other rows keep SOT + label shifted, exactly
    what the model would build itself."""

    def __init__(self, collator):
        self.collator = collator
        self.start = int(collator.decoder_start_token_id)

    def __getattr__(self, name: str):
        if name == "collator":
            raise AttributeError(name)
        return getattr(self.collator, name)

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.collator(samples)
        prompts = [s.get("prompt_ids") for s in samples]
        if not any(prompts):
            return batch
        labels = batch["labels"]
        rows_in, rows_out = [], []
        for i in range(labels.shape[0]):  # rows past len(samples): ones the collator added
            ids = labels[i][labels[i] != IGNORE_INDEX].tolist()
            prompt = prompts[i] if i < len(prompts) and prompts[i] else []
            full = [*prompt, self.start, *ids]
            rows_in.append(full[:-1])
            rows_out.append([IGNORE_INDEX] * len(prompt) + ids)
        length = max(len(r) for r in rows_in)
        # padding positions come after every real one (causal decoder) and carry no loss
        dec = torch.full((len(rows_in), length), self.start, dtype=torch.long)
        out = torch.full((len(rows_in), length), IGNORE_INDEX, dtype=torch.long)
        for i, (a, b) in enumerate(zip(rows_in, rows_out, strict=True)):
            dec[i, : len(a)] = torch.tensor(a, dtype=torch.long)
            out[i, : len(b)] = torch.tensor(b, dtype=torch.long)
        batch["labels"] = out
        batch["decoder_input_ids"] = dec
        return batch


def attach_prompts(cfg, train_dataset, tokenizer):
    """The training dataset with prompts (``cfg.prompt_ratio`` > 0), else as it is."""
    if not cfg.prompt_ratio:
        return train_dataset
    phrases = read_phrases(cfg.prompt_file) if cfg.prompt_file else []
    source = PromptSource(train_dataset.records, phrases)
    if not source.own and not source.previous and not phrases:
        raise ValueError(
            f"--prompt_ratio={cfg.prompt_ratio}: {cfg.train_data} has no record with a 'prompt' "
            "field and no consecutive slices of one recording to take previous text from; "
            "give --prompt_file"
        )
    logger.info(
        "prompts for %.0f%% of training samples: %d records have their own prompt, "
        "%d a previous slice, %d phrases",
        100 * cfg.prompt_ratio,
        len(source.own),
        len(source.previous),
        len(phrases),
    )
    return PromptedDataset(train_dataset, source, tokenizer, cfg.prompt_ratio, cfg.seed)


def wrap_collators(trainer) -> None:
    """Make the trainer's collators build prompted decoder inputs (a no-op for batches
    without prompts, so evaluation is unchanged)."""
    trainer.data_collator = PromptCollator(trainer.data_collator)
    if getattr(trainer, "train_collator", None) is not None:
        trainer.train_collator = PromptCollator(trainer.train_collator)
