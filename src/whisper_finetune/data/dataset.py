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
* **Text**: ``sentence``; a record that has only timed ``sentences`` (an empty
  ``sentence``) is trained on their texts joined, with or without timestamps.
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

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE, AudioError, load_audio
from whisper_finetune.data.manifest import Manifest, ManifestError, Record
from whisper_finetune.data.records import (  # noqa: F401  (re-exported)
    MAX_DURATION_S,
    MAX_LABEL_TOKENS,
    REASONS,
    DataReport,
    Skipped,
    check_sentences,
    prepare_records,
    write_reports,
)
from whisper_finetune.text import language_code  # noqa: F401  (re-exported: the API here)

logger = logging.getLogger(__name__)

TIME_PRECISION_S = 0.02  # one timestamp token step


def plain_text(record: Record) -> str:
    """The record's text without timing: ``sentence``, or its ``sentences`` joined.

    A record may carry only timed ``sentences`` (``sentence`` empty); drawn without
    timestamps it must still be trained on its words, never on an empty transcript.
    """
    if record.sentence.strip():
        return record.sentence
    texts = [s.text.strip() for s in record.sentences if s.text.strip()]
    text = ""
    for part in texts:  # no space where either side is Chinese (or another CJK script)
        if text and not (_is_cjk(text[-1]) or _is_cjk(part[0])):
            text += " "
        text += part
    return text


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF


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
        return prefix + [self.no_timestamps] + self._text(plain_text(record)) + [self.eot]

    def max_length(self, record: Record) -> int:
        """The longest label this record can get (with or without timestamps)."""
        n = len(self.build(record, timestamps=False))
        if record.sentences:
            n = max(n, len(self.build(record, timestamps=True)))
        return n


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
            where they never change); about 1 MB per clip for 80 mel bins. Each
            dataloader worker would hold its own cache, lost at the end of every epoch,
            so the trainer turns it on only without workers.
        attention_mask: add the feature extractor's frame mask (1 for audio, 0 for the
            padding up to 30 s), which SpecAugment needs to mask only real audio.

    Every sample also carries its manifest ``origin`` and its ``language`` code, which
    the collator passes on for error messages and per-sample decoding in evaluation.
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
        attention_mask: bool = False,
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
        self.attention_mask = attention_mask
        self._cache: dict[int, tuple[np.ndarray, int]] | None = (
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

    def frame_mask(self, n_samples: int) -> np.ndarray:
        """1 for the log-mel frames that hold audio, 0 for the padding (10 ms frames)."""
        hop = self.feature_extractor.hop_length
        frames = self.feature_extractor.nb_max_frames
        mask = np.zeros(frames, dtype=np.int64)
        mask[: min(frames, -(-n_samples // hop))] = 1
        return mask

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
        n_samples = None
        if self._cache is not None and index in self._cache:
            features, n_samples = self._cache[index]
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
            n_samples = wave.size
            if self._cache is not None:
                self._cache[index] = (features, n_samples)
        sample = {
            "input_features": features,
            "labels": self.labels.build(record, timestamps, scale, offset),
            "origin": record.origin or record.audio_path,
            "language": language_code(record.language)
            if record.language
            else self.labels.default_language,
        }
        if self.attention_mask:
            sample["attention_mask"] = self.frame_mask(n_samples)
        return sample
