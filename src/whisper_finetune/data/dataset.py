"""Manifest records -> Whisper training samples (log-mel features and label token ids).

Labels follow Whisper's own training format::

    <|startoftranscript|><|zh|><|transcribe|><|notimestamps|>你好世界<|endoftext|>
    <|startoftranscript|><|zh|><|transcribe|><|0.00|>你好<|1.20|><|1.40|>世界<|2.60|><|endoftext|>
    <|startoftranscript|><|nocaptions|><|endoftext|>                       (no speech)

* **Language**: the record's ``language`` when it has one, else the configured default.
* **Timestamps**: a share ``timestamp_ratio`` of the records that have ``sentences`` is
  trained with timestamp tokens (0.02 s steps, relative to the clip); the others, and
  every record without ``sentences``, with ``<|notimestamps|>``. Whisper was trained on
  such a mix; training only without timestamps loses timestamp prediction.
* **No speech**: a record whose ``sentence`` is empty (and has no ``sentences``) is a
  negative sample. Whisper predicts its no-speech token right after
  ``<|startoftranscript|>`` (that is where faster-whisper and openai-whisper read
  ``no_speech_prob``), so the target is ``SOT, <no-speech>, EOT``. The token is
  ``<|nocaptions|>`` (50362) in the vocabularies up to large-v2, renamed
  ``<|nospeech|>`` in large-v3; whichever the tokenizer really has is used.

Bad data never passes silently: :func:`prepare_records` rejects (and counts) clips that
are too short or too long and labels over 448 tokens; unreadable audio either raises
with the manifest line or, with ``skip_bad=True``, is skipped and listed in the
:class:`DataReport`.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE, AudioError, load_audio
from whisper_finetune.data.checkcache import cache_for
from whisper_finetune.data.manifest import Manifest, ManifestError, Record

logger = logging.getLogger(__name__)

MAX_LABEL_TOKENS = 448  # Whisper's decoder context (max_target_positions), SOT..EOT included
MAX_DURATION_S = 30.0  # Whisper's input window; longer audio would be truncated silently
TIME_PRECISION_S = 0.02  # one timestamp token step

REASONS = ("too_short", "too_long", "labels_too_long", "bad_audio", "bad_record")


@dataclass(frozen=True)
class Skipped:
    """One record left out of training, and why."""

    origin: str
    audio_path: str
    reason: str
    detail: str = ""


@dataclass
class DataReport:
    """What :func:`prepare_records` did with a manifest."""

    name: str
    total: int = 0
    kept: int = 0
    no_speech: int = 0
    with_sentences: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Skipped records per reason (every reason present, zero included)."""
        c = Counter(s.reason for s in self.skipped)
        return {r: c.get(r, 0) for r in REASONS}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total": self.total,
            "kept": self.kept,
            "skipped_count": len(self.skipped),
            "skipped_by_reason": self.counts,
            "no_speech": self.no_speech,
            "with_sentences": self.with_sentences,
            "skipped": [asdict(s) for s in self.skipped],
        }

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in self.counts.items() if v]
        return f"{self.name}: kept {self.kept}/{self.total}" + (
            f" (skipped {', '.join(parts)})" if parts else ""
        )


def write_reports(reports: Sequence[DataReport], path: str | os.PathLike) -> Path:
    """Write data reports as one JSON file (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = {r.name: r.to_json() for r in reports}
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def language_code(language: str) -> str:
    """``"zh"``, ``"Chinese"``, ``"mandarin"`` -> ``"zh"``; unknown names raise ValueError."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    key = language.strip().lower()
    if key.startswith("<|") and key.endswith("|>"):
        key = key[2:-2]
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(f"unknown Whisper language {language!r}")


class LabelBuilder:
    """Turns records into label token ids with the real tokenizer's special tokens.

    Args:
        tokenizer: a Whisper tokenizer (multilingual vocabulary).
        language: default language (code or name) for records without one.
        task: ``transcribe`` or ``translate``.
    """

    def __init__(self, tokenizer, language: str = "zh", task: str = "transcribe"):
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()

        def token(name: str) -> int:
            if name not in vocab:
                raise ValueError(
                    f"the tokenizer has no {name} token: is it a multilingual Whisper tokenizer?"
                )
            return vocab[name]

        self.sot = token("<|startoftranscript|>")
        self.eot = token("<|endoftext|>")
        self.no_timestamps = token("<|notimestamps|>")
        self.timestamp_begin = token("<|0.00|>")
        self.no_speech = vocab.get("<|nospeech|>", vocab.get("<|nocaptions|>"))
        if self.no_speech is None:
            raise ValueError("the tokenizer has neither <|nospeech|> nor <|nocaptions|>")
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be transcribe or translate, got {task!r}")
        self.task = task
        self.task_id = token(f"<|{task}|>")
        self._vocab = vocab
        self.default_language = language_code(language)
        self.language_id(self.default_language)  # fail now, not mid-training

    def language_id(self, language: str | None) -> int:
        code = language_code(language) if language else self.default_language
        name = f"<|{code}|>"
        if name not in self._vocab:
            raise ValueError(f"language {language!r} has no token in this tokenizer")
        return self._vocab[name]

    def _text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _timestamp(self, seconds: float) -> int:
        steps = int(round(min(max(seconds, 0.0), MAX_DURATION_S) / TIME_PRECISION_S))
        return self.timestamp_begin + steps

    @staticmethod
    def is_no_speech(record: Record) -> bool:
        return not record.sentence.strip() and not any(s.text.strip() for s in record.sentences)

    def build(
        self,
        record: Record,
        timestamps: bool = False,
        time_scale: float = 1.0,
        time_offset: float = 0.0,
    ) -> list[int]:
        """Label ids for one record, SOT to EOT.

        Args:
            record: the utterance.
            timestamps: use the record's ``sentences`` with timestamp tokens (ignored
                when it has none).
            time_scale: multiply sentence times by this (speed augmentation).
            time_offset: then add this many seconds (shift augmentation).
        """
        if self.is_no_speech(record):
            return [self.sot, self.no_speech, self.eot]
        prefix = [self.sot, self.language_id(record.language), self.task_id]
        if timestamps and record.sentences:
            ids = list(prefix)
            for s in record.sentences:
                ids.append(self._timestamp(s.start * time_scale + time_offset))
                ids.extend(self._text(s.text))
                ids.append(self._timestamp(s.end * time_scale + time_offset))
            return ids + [self.eot]
        return prefix + [self.no_timestamps] + self._text(record.sentence) + [self.eot]

    def max_length(self, record: Record) -> int:
        """The longest label this record can get (with or without timestamps)."""
        n = len(self.build(record, timestamps=False))
        if record.sentences:
            n = max(n, len(self.build(record, timestamps=True)))
        return n


def _record_duration(record: Record, verify_audio: bool, decoded: dict[str, float]) -> float | None:
    """Seconds of audio the record stands for; from the decoded audio when ``verify_audio``.

    A file that many records slice (``start_time``/``end_time``, e.g. WenetSpeech) is
    decoded once; its length is kept in ``decoded`` and the slices are checked against it.
    """
    if not verify_audio:
        if record.start_time is not None and record.end_time is not None:
            return record.end_time - record.start_time
        return record.duration
    if record.start_time is None and record.end_time is None:
        return load_audio(record.audio_path).size / SAMPLE_RATE
    if record.audio_path not in decoded:
        decoded[record.audio_path] = load_audio(record.audio_path).size / SAMPLE_RATE
    length = decoded[record.audio_path]
    start = record.start_time or 0.0
    end = length if record.end_time is None else min(record.end_time, length)
    if start >= length:
        raise AudioError(
            f"{record.audio_path}: start ({start}s) is beyond the end of the audio ({length:.3f}s)"
        )
    return end - start


def prepare_records(
    records: Sequence[Record],
    labels: LabelBuilder,
    *,
    name: str = "train",
    min_duration: float = 0.5,
    max_duration: float = MAX_DURATION_S,
    max_label_tokens: int = MAX_LABEL_TOKENS,
    verify_audio: bool = True,
    skip_bad: bool = False,
) -> tuple[list[Record], DataReport]:
    """Filter records for training and count what was left out.

    Args:
        records: manifest records.
        labels: the label builder (language and tokenizer checks happen here too).
        name: the data set's name in the report (``train``, ``eval``, ``guard``).
        min_duration: shorter clips are skipped (seconds).
        max_duration: longer clips are skipped (seconds, at most 30).
        max_label_tokens: longer labels are skipped (448 is Whisper's decoder context).
        verify_audio: decode every clip once now, so that durations come from the
            audio itself and unreadable files are found before training starts.
        skip_bad: skip unreadable audio and malformed records (listed in the report)
            instead of raising.

    Returns:
        The kept records and the report.

    Raises:
        ValueError: when ``max_duration`` exceeds 30 s, or (without ``skip_bad``) for
            unreadable audio or a bad record; the message names the manifest line.
    """
    if not 0 < max_duration <= MAX_DURATION_S:
        raise ValueError(
            f"max_duration must be in (0, {MAX_DURATION_S:g}] seconds, got {max_duration}"
        )
    if min_duration > max_duration:
        raise ValueError(f"min_duration ({min_duration}) exceeds max_duration ({max_duration})")
    report = DataReport(name=name, total=len(records))
    kept = []
    decoded: dict[str, float] = {}  # seconds per fully decoded file
    cache = cache_for(records) if verify_audio else None  # what `prepare validate` found
    for i, record in enumerate(records):
        where = record.origin or record.audio_path
        try:
            n_labels = labels.max_length(record)
            duration = cache.seconds(record) if cache is not None else None
            if duration is None:
                duration = _record_duration(record, verify_audio, decoded)
        except (AudioError, FileNotFoundError, ValueError) as exc:
            reason = (
                "bad_audio" if isinstance(exc, (AudioError, FileNotFoundError)) else "bad_record"
            )
            if not skip_bad:
                raise ManifestError(
                    f"{where}: {exc} (use --skip_bad_samples to skip such records)"
                ) from exc
            report.skipped.append(Skipped(where, record.audio_path, reason, str(exc)))
            continue
        reason = detail = None
        if duration is not None and duration < min_duration:
            reason, detail = "too_short", f"{duration:.2f}s < {min_duration}s"
        elif duration is not None and duration > max_duration:
            reason, detail = "too_long", f"{duration:.2f}s > {max_duration}s"
        elif n_labels > max_label_tokens:
            reason, detail = "labels_too_long", f"{n_labels} tokens > {max_label_tokens}"
        if reason:
            report.skipped.append(Skipped(where, record.audio_path, reason, detail))
            continue
        kept.append(i)
        report.no_speech += labels.is_no_speech(record)
        report.with_sentences += bool(record.sentences)
    # a lazy manifest stays lazy: a view of the kept lines, not a list of records
    kept = records.select(kept) if isinstance(records, Manifest) else [records[i] for i in kept]
    report.kept = len(kept)
    level = logging.WARNING if report.skipped else logging.INFO
    logger.log(level, "%s", report.summary())
    return kept, report


class WhisperDataset:
    """A map-style dataset: index -> ``{"input_features": (n_mels, 3000), "labels": [ids]}``.

    Audio is decoded lazily. Randomness (augmentation, the timestamp choice) comes from
    a generator seeded by ``(seed, epoch, index)``, so a run resumed mid-epoch sees the
    same samples as an uninterrupted one, whatever the number of dataloader workers.

    Args:
        records: filtered records (see :func:`prepare_records`).
        feature_extractor: a ``WhisperFeatureExtractor``.
        labels: the label builder.
        timestamp_ratio: share of records with ``sentences`` trained with timestamps.
        augmenter: waveform augmentation (training only), or None.
        seed: base seed.
        cache_features: keep computed log-mels in memory (only without augmentation,
            where they never change); about 1 MB per clip for 80 mel bins.
    """

    def __init__(
        self,
        records: Sequence[Record],
        feature_extractor,
        labels: LabelBuilder,
        *,
        timestamp_ratio: float = 0.0,
        augmenter=None,
        seed: int = 0,
        cache_features: bool = False,
    ):
        if not 0.0 <= timestamp_ratio <= 1.0:
            raise ValueError(f"timestamp_ratio must be in [0, 1], got {timestamp_ratio}")
        self.records = records if isinstance(records, Manifest) else list(records)
        self.feature_extractor = feature_extractor
        self.labels = labels
        self.timestamp_ratio = timestamp_ratio
        self.augmenter = augmenter if augmenter else None
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, np.ndarray] | None = (
            {} if cache_features and self.augmenter is None else None
        )

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch (by a trainer callback)."""
        self.epoch = int(epoch)

    def _needs_rng(self, record: Record) -> bool:
        return self.augmenter is not None or (
            0.0 < self.timestamp_ratio < 1.0 and bool(record.sentences)
        )

    def features(self, wave: np.ndarray) -> np.ndarray:
        out = self.feature_extractor(wave, sampling_rate=SAMPLE_RATE, return_tensors="np")
        return out.input_features[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        rng = (
            np.random.default_rng([self.seed, self.epoch, index])
            if self._needs_rng(record)
            else None
        )
        timestamps = bool(record.sentences) and (
            self.timestamp_ratio >= 1.0 or (rng is not None and rng.random() < self.timestamp_ratio)
        )
        scale, offset = 1.0, 0.0
        if self._cache is not None and index in self._cache:
            features = self._cache[index]
        else:
            try:
                wave = load_audio(record.audio_path, record.start_time, record.end_time)
            except (AudioError, FileNotFoundError) as exc:
                raise ManifestError(f"{record.origin or record.audio_path}: {exc}") from exc
            if self.augmenter is not None:
                augmented = self.augmenter(wave, rng)
                if augmented.wave.size <= MAX_DURATION_S * SAMPLE_RATE:
                    wave, scale, offset = (
                        augmented.wave,
                        augmented.time_scale,
                        augmented.time_offset,
                    )
            if wave.size > MAX_DURATION_S * SAMPLE_RATE:
                # never truncate silently: the label would describe audio the model cannot see
                raise ManifestError(
                    f"{record.origin or record.audio_path}: {wave.size / SAMPLE_RATE:.2f}s of audio "
                    f"exceeds Whisper's {MAX_DURATION_S:g}s window"
                )
            features = self.features(wave)
            if self._cache is not None:
                self._cache[index] = features
        return {
            "input_features": features,
            "labels": self.labels.build(record, timestamps, scale, offset),
        }
