"""Alignment heads: which decoder cross-attention heads follow the audio in time.

Word timestamps (transformers' ``return_token_timestamps``, faster-whisper's and
openai-whisper's ``word_timestamps``, whisper.cpp's DTW) come from a few cross-attention
heads listed in ``generation_config.alignment_heads``: their attention, normalised and
median-filtered, is aligned to the audio frames by dynamic time warping. Fine-tuning can
move which heads align; the list of the base model then points at heads that no longer do.

Here every head is scored against known timing: a record with timed ``sentences`` (a
packed window of the built-in corpus, a prepared long recording) says in which stretch
of audio each of its tokens is spoken. The transcript is forced through the decoder
once (teacher forcing, so recognition errors do not enter), and a head's score is the
share of its attention, over the tokens of a sentence, that falls inside that sentence's
time span (with ``SLACK_S`` either side), averaged over tokens. The best heads are chosen
on one half of the records; on the other half the word-timestamp error at sentence ends
(the DTW end of each sentence's last token against the known end) is measured for the
model's current heads and the chosen ones, and the chosen ones are written only when they
do better there. Sentence starts are measured too (:func:`boundary_mae`) but not used to
decide: DTW gives the pause before a sentence to its first token, so a start's error
mostly measures that pause (on whisper-base, 1.9 s at starts against 0.24 s at ends).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FRAME_S = 0.02  # one encoder frame (and one timestamp step)
SLACK_S = 0.2  # sentence edges in manifests are not exact
MEDIAN_WIDTH = 7  # whisper's median filter on the attention weights


@dataclass(frozen=True)
class TimedSample:
    """A record whose tokens' sentence spans are known.

    ``tokens`` is the forced decoder input: SOT sequence, ``<|notimestamps|>``, the
    text, EOT; rows ``first_row .. first_row + n_text`` of the attention predict the text
    tokens then EOT (as openai-whisper's ``find_alignment`` reads them).
    """

    origin: str
    features: np.ndarray
    tokens: list[int]
    first_row: int
    token_sentence: np.ndarray  # sentence index of each text token
    spans: np.ndarray  # (n_sentences, 2) start, end seconds
    n_frames: int  # encoder frames that hold audio


def timed_samples(records: Sequence, tokenizer, feature_extractor, language: str) -> list:
    """The records with timed ``sentences``, as :class:`TimedSample` (others are left out).

    Raises:
        ValueError: when none of the records has timed sentences.
    """
    from whisper_finetune.data.audio import SAMPLE_RATE, load_audio

    vocab = tokenizer.get_vocab()
    prefix = [
        vocab["<|startoftranscript|>"],
        vocab[f"<|{language}|>"],
        vocab["<|transcribe|>"],
        vocab["<|notimestamps|>"],
    ]
    out = []
    for record in records:
        parts = [(i, s) for i, s in enumerate(record.sentences) if s.text.strip()]
        if not parts:
            continue
        wave = load_audio(record.audio_path, record.start_time, record.end_time)
        text, owner = [], []
        for k, (_, s) in enumerate(parts):
            ids = tokenizer.encode(s.text.strip(), add_special_tokens=False)
            text += ids
            owner += [k] * len(ids)
        feats = feature_extractor(wave, sampling_rate=SAMPLE_RATE, return_tensors="np")
        out.append(
            TimedSample(
                origin=record.origin or record.audio_path,
                features=feats.input_features[0],
                tokens=prefix + text + [vocab["<|endoftext|>"]],
                first_row=len(prefix) - 1,
                token_sentence=np.asarray(owner),
                spans=np.asarray([(s.start, s.end) for _, s in parts], dtype=np.float64),
                n_frames=min(1500, int(np.ceil(wave.size / SAMPLE_RATE / FRAME_S))),
            )
        )
    if not out:
        raise ValueError("no record has timed 'sentences': alignment heads need known timing")
    return out


def cross_attentions(model, sample: TimedSample) -> np.ndarray:
    """(layers, heads, text tokens + 1, audio frames) cross-attention, teacher-forced."""
    import torch

    with torch.no_grad():
        out = model(
            input_features=torch.from_numpy(sample.features[None]).to(model.dtype),
            decoder_input_ids=torch.tensor([sample.tokens[:-1]]),
            output_attentions=True,
        )
    rows = slice(sample.first_row, len(sample.tokens) - 1)
    layers = [a[0, :, rows, : sample.n_frames].float().numpy() for a in out.cross_attentions]
    return np.stack(layers)


def head_scores(attn: np.ndarray, sample: TimedSample, slack_s: float = SLACK_S) -> np.ndarray:
    """(layers, heads): mean share of each text token's attention inside its sentence."""
    n_text = len(sample.token_sentence)
    times = (np.arange(attn.shape[-1]) + 0.5) * FRAME_S
    spans = sample.spans[sample.token_sentence]  # (n_text, 2)
    inside = (times[None] >= spans[:, :1] - slack_s) & (times[None] <= spans[:, 1:] + slack_s)
    weights = attn[:, :, :n_text]
    mass = (weights * inside).sum(-1) / np.maximum(weights.sum(-1), 1e-9)
    return mass.mean(-1)


def _median_filter(x: np.ndarray, width: int) -> np.ndarray:
    if x.shape[-1] <= width // 2:
        return x
    pad = width // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping of a (tokens, frames) cost matrix: the path's indices."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):  # the diagonal/vertical moves vectorised per row
        diag = acc[i - 1, :-1]
        up = acc[i - 1, 1:]
        best = np.minimum(diag, up)
        row = cost[i - 1] + best
        move = np.where(diag <= up, 0, 1)
        # then the horizontal moves, which depend on this row's own left neighbour
        for j in range(1, m + 1):
            left = acc[i, j - 1] + cost[i - 1, j - 1]
            if left < row[j - 1]:
                acc[i, j], trace[i, j] = left, 2
            else:
                acc[i, j], trace[i, j] = row[j - 1], move[j - 1]
    i, j = n, m
    text, time = [], []
    while i > 0 and j > 0:
        text.append(i - 1)
        time.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.asarray(text[::-1]), np.asarray(time[::-1])


def token_starts(attn: np.ndarray, heads: Sequence[tuple[int, int]]) -> np.ndarray:
    """Start time (s) of each text token and of EOT, as openai-whisper's DTW gives them."""
    weights = np.stack([attn[layer, head] for layer, head in heads])
    std = weights.std(axis=-2, keepdims=True)
    weights = (weights - weights.mean(axis=-2, keepdims=True)) / np.maximum(std, 1e-9)
    matrix = _median_filter(weights, MEDIAN_WIDTH).mean(axis=0)
    text_idx, time_idx = dtw(-matrix)
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    return time_idx[jumps] * FRAME_S


def boundary_errors(starts: np.ndarray, sample: TimedSample) -> np.ndarray:
    """|error| (s) of each sentence's start (its first token) and end (the next token's
    start), against the known spans."""
    owner = sample.token_sentence
    errors = []
    for k, (start, end) in enumerate(sample.spans):
        idx = np.flatnonzero(owner == k)
        if idx.size == 0 or idx[-1] + 1 >= len(starts):
            continue
        errors += [abs(starts[idx[0]] - start), abs(starts[idx[-1] + 1] - end)]
    return np.asarray(errors)


@dataclass(frozen=True)
class HeadChoice:
    """What :func:`choose_alignment_heads` found."""

    heads: list[tuple[int, int]]
    previous: list[tuple[int, int]] | None
    scores: np.ndarray  # (layers, heads) on the choosing half
    mae_previous: float | None  # sentence-end MAE (s) on the checking half, current heads
    mae_chosen: float  # the same with the chosen heads
    n_choose: int
    n_check: int

    @property
    def better(self) -> bool:
        return self.mae_previous is None or self.mae_chosen < self.mae_previous

    def to_json(self) -> dict:
        return {
            "heads": [list(h) for h in self.heads],
            "previous": [list(h) for h in self.previous] if self.previous else None,
            "sentence_end_mae_s_previous": self.mae_previous,
            "sentence_end_mae_s_chosen": self.mae_chosen,
            "written": self.better,
            "records_choose": self.n_choose,
            "records_check": self.n_check,
        }


def load_eager(model_path: str | os.PathLike):
    """The model with eager attention (the only kind that returns attention weights)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(
        model_path, dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def choose_alignment_heads(
    model_path: str | os.PathLike,
    records: Sequence,
    *,
    language: str = "zh",
    num_heads: int | None = None,
    max_records: int = 16,
) -> HeadChoice:
    """Score every cross-attention head of a transformers Whisper folder on timed records.

    Args:
        model_path: a transformers Whisper folder.
        records: manifest records; those with timed ``sentences`` are used (at most
            ``max_records``; the even ones choose, the odd ones check).
        language: the language token to force.
        num_heads: how many heads to keep (default: as many as the model lists now, or
            one in eight of all heads when it lists none).

    Raises:
        ValueError: when fewer than two records have timed sentences.
    """
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

    model_path = Path(model_path)
    tokenizer = WhisperTokenizer.from_pretrained(model_path)
    extractor = WhisperFeatureExtractor.from_pretrained(model_path)
    timed = [r for r in records if any(s.text.strip() for s in r.sentences)][:max_records]
    if len(timed) < 2:
        raise ValueError(
            f"alignment heads need at least 2 records with timed 'sentences', found {len(timed)}"
        )
    samples = timed_samples(timed, tokenizer, extractor, language)
    model = load_eager(model_path)
    layers, n_heads = model.config.decoder_layers, model.config.decoder_attention_heads
    previous = model.generation_config.alignment_heads
    previous = [tuple(int(x) for x in h) for h in previous] if previous else None
    k = num_heads or (len(previous) if previous else max(1, layers * n_heads // 8))
    if not 1 <= k <= layers * n_heads:
        raise ValueError(f"--num_heads must be in [1, {layers * n_heads}], got {k}")
    choose, check = samples[0::2], samples[1::2]
    scores = np.zeros((layers, n_heads))
    for sample in choose:
        scores += head_scores(cross_attentions(model, sample), sample)
    scores /= len(choose)
    order = np.argsort(-scores, axis=None, kind="stable")[:k]
    heads = sorted((int(i // n_heads), int(i % n_heads)) for i in order)

    errors: dict[str, list] = {"previous": [], "chosen": []}
    for sample in check:  # one forward pass per record for both sets
        attn = cross_attentions(model, sample)
        for name, head_set in (("previous", previous), ("chosen", heads)):
            if head_set:
                errors[name].append(boundary_errors(token_starts(attn, head_set), sample))

    def mae(name: str) -> float | None:
        # sentence ends only: DTW gives the pause before a sentence to its first token,
        # so a start's error mostly measures that pause, whatever the heads
        return float(np.concatenate(errors[name])[1::2].mean()) if errors[name] else None

    choice = HeadChoice(
        heads=heads,
        previous=previous,
        scores=scores,
        mae_previous=mae("previous"),
        mae_chosen=mae("chosen"),
        n_choose=len(choose),
        n_check=len(check),
    )
    logger.info(
        "alignment heads %s (sentence-end MAE %.3f s; the model's current heads: %s)",
        heads,
        choice.mae_chosen,
        "none" if choice.mae_previous is None else f"{choice.mae_previous:.3f} s",
    )
    return choice


def boundary_mae(
    model_path: str | os.PathLike,
    records: Sequence,
    *,
    language: str = "zh",
    heads=None,
    parts: bool = False,
):
    """Mean |error| (s) of sentence starts and ends from word-level DTW timing on the
    transformers model (its own ``alignment_heads`` unless ``heads`` is given)."""
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(model_path)
    extractor = WhisperFeatureExtractor.from_pretrained(model_path)
    samples = timed_samples(records, tokenizer, extractor, language)
    model = load_eager(model_path)
    heads = heads or [tuple(h) for h in model.generation_config.alignment_heads]
    errors = [boundary_errors(token_starts(cross_attentions(model, s), heads), s) for s in samples]
    return _summary(errors, parts)


def ct2_boundary_mae(
    ct2_dir: str | os.PathLike, records: Sequence, *, language: str = "zh", parts: bool = False
):
    """The same error on a CTranslate2 model, through CTranslate2's own ``align`` (the DTW
    faster-whisper's ``word_timestamps`` uses, over the heads in its ``config.json``)."""
    import ctranslate2
    from transformers import WhisperFeatureExtractor, WhisperTokenizerFast

    tokenizer = WhisperTokenizerFast.from_pretrained(ct2_dir)
    extractor = WhisperFeatureExtractor.from_pretrained(ct2_dir)
    samples = timed_samples(records, tokenizer, extractor, language)
    model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    errors = []
    for s in samples:
        features = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(s.features[None], dtype=np.float32)
        )
        text = s.tokens[s.first_row + 1 : -1]
        result = model.align(
            features, s.tokens[: s.first_row], [text], s.n_frames * 2, median_filter_width=7
        )[0]
        text_idx = np.asarray([p[0] for p in result.alignments])
        time_idx = np.asarray([p[1] for p in result.alignments])
        jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
        errors.append(boundary_errors(time_idx[jumps] * FRAME_S, s))
    return _summary(errors, parts)


def _summary(errors: list, parts: bool):
    """The mean error; with ``parts``, also of the starts and of the ends alone (the
    errors come in (start, end) pairs)."""
    both = np.concatenate(errors)
    if not parts:
        return float(both.mean())
    return {
        "both": float(both.mean()),
        "start": float(both[0::2].mean()),
        "end": float(both[1::2].mean()),
    }
