"""Manifest records -> the records a run trains on, and a report of what was left out.

:func:`prepare_records` rejects (and counts) clips that are too short or too long, labels
over 448 tokens, and records whose timed ``sentences`` are out of order, overlap or lie
outside the clip; unreadable audio either raises with the manifest line or, with
``skip_bad=True``, is skipped and listed in the :class:`DataReport`.
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

from whisper_finetune.data.audio import SAMPLE_RATE, AudioError, load_audio
from whisper_finetune.data.checkcache import cache_for
from whisper_finetune.data.manifest import Manifest, ManifestError, Record

logger = logging.getLogger(__name__)

MAX_LABEL_TOKENS = 448  # Whisper's decoder context (max_target_positions), SOT..EOT included
MAX_DURATION_S = 30.0  # Whisper's input window; longer audio would be truncated silently
SENTENCE_TOLERANCE_S = 0.05  # timing slack for sentences (rounding in the manifests)

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


def check_sentences(record: Record, duration: float | None) -> None:
    """Raise ValueError unless the record's ``sentences`` are in order, do not overlap and
    lie inside the clip (``duration`` seconds, when known)."""
    previous_end = 0.0
    for i, s in enumerate(record.sentences):
        if s.start < previous_end - SENTENCE_TOLERANCE_S:
            raise ValueError(
                f"sentences[{i}] starts at {s.start}s, before sentences[{i - 1}] ends "
                f"({previous_end}s): sentences must be in order and must not overlap"
            )
        if duration is not None and s.end > duration + SENTENCE_TOLERANCE_S:
            raise ValueError(
                f"sentences[{i}] ends at {s.end}s, past the end of the clip ({duration:.2f}s)"
            )
        previous_end = s.end


def prepare_records(
    records: Sequence[Record],
    labels,
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
            check_sentences(record, duration)
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
