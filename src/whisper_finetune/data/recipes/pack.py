"""Pack short utterances into windows of up to 30 s, with per-sentence timestamps.

Whisper's encoder always sees a 30 s window: a 4 s utterance is padded with 26 s of
silence, and the encoder's cost (the bulk of a training step) is paid for all 30 s. Packing
consecutive utterances into one window, as Whisper's own pre-training data is laid out,
divides that cost by the number of utterances per window (about 7 for AISHELL-like
clips) and gives the model ``sentences`` timestamps to learn from. The text of a window is
its utterances' texts joined in order, so a window also trains plain transcription when
the dataset's timestamp share chooses ``<|notimestamps|>``.

Packing never mixes languages, leaves no-speech samples (empty sentence) as they are, and
writes each window as a 16 kHz wav; it is deterministic for a given seed.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from whisper_finetune.data.manifest import Record, TimedText, read_manifest, write_manifest

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 30.0  # Whisper's input window


@dataclass(frozen=True)
class PackConfig:
    """How to pack a manifest."""

    manifest: str = field(metadata={"help": "manifest of short utterances to pack"})
    output: str = field(metadata={"help": "packed manifest to write (JSON Lines)"})
    audio_dir: str | None = field(
        default=None, metadata={"help": "folder for packed wavs (default: next to output)"}
    )
    max_duration: float = field(
        default=28.0, metadata={"help": "longest window in seconds (at most 30)"}
    )
    gap: float = field(default=0.4, metadata={"help": "silence between utterances, seconds"})
    shuffle: bool = field(
        default=True, metadata={"help": "shuffle utterances before packing (else keep order)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for the shuffle"})
    keep_single: float = field(
        default=0.0,
        metadata={
            "help": "share of utterances also kept unpacked (0..1), for short-clip inference"
        },
    )
    tokenizer: str | None = field(
        default="embedded:whisper-base",
        metadata={
            "help": "Whisper tokenizer counting a window's label tokens (a folder, a "
            "tokenizer.json, embedded:whisper-base; None: an upper-bound estimate)"
        },
    )
    max_tokens: int = field(
        default=448, metadata={"help": "decoder positions a window's label may use (Whisper: 448)"}
    )

    def __post_init__(self) -> None:
        if not 0 < self.max_duration <= WINDOW_SECONDS:
            raise ValueError(
                f"max_duration must be in (0, {WINDOW_SECONDS}], got {self.max_duration}"
            )
        if self.gap < 0:
            raise ValueError(f"gap must be >= 0, got {self.gap}")
        if not 0 <= self.keep_single <= 1:
            raise ValueError(f"keep_single must be within [0, 1], got {self.keep_single}")
        if not 0 < self.max_tokens <= 448:
            raise ValueError(f"max_tokens must be in 1..448, got {self.max_tokens}")


@dataclass(frozen=True)
class PackResult:
    output: Path
    n_input: int
    n_windows: int
    n_single: int
    n_unpacked: int  # no-speech or too long to share a window
    seconds: float


def _join(left: str, right: str) -> str:
    """Concatenate texts; a space only between two Latin letters or digits."""
    if (
        left
        and right
        and left[-1].isascii()
        and left[-1].isalnum()
        and right[0].isascii()
        and right[0].isalnum()
    ):
        return f"{left} {right}"
    return left + right


def _timed(record: Record, duration: float) -> list[TimedText]:
    if record.sentences:
        return list(record.sentences)
    return [TimedText(0.0, round(duration, 3), record.sentence)]


def _check_outputs(manifest: str, output: Path, audio_dir: Path) -> None:
    """Before any work: never write over the input, never into a folder of other files."""
    from whisper_finetune.staging import UnsafeOutputError, check_output_file, check_replaceable

    if output.expanduser().resolve() == Path(manifest).expanduser().resolve():
        raise UnsafeOutputError(
            f"--output {output} is the input manifest: packing would replace it; "
            "choose another file"
        )
    check_output_file(output, "--output")
    check_replaceable(audio_dir, kind="pack", sources=(manifest,), what="--audio_dir")


SPAN_TOLERANCE_S = 0.1  # as prepare validate's --duration_tolerance


def _check_span(record: Record, loaded: float) -> None:
    """A slice must lie inside its file: a short read would pack a window whose text
    runs past its audio (issue 27.11)."""
    if record.end_time is None:
        return
    wanted = record.end_time - (record.start_time or 0.0)
    if loaded < wanted - SPAN_TOLERANCE_S:
        from whisper_finetune.data.recipes import audio_duration_s

        raise ValueError(
            f"{record.origin}: audio.end_time: {record.end_time:.2f} s is beyond the end of "
            f"the file ({audio_duration_s(record.audio_path):.2f} s, {record.audio_path}); "
            "fix the record (prepare validate lists every such record)"
        )


def _refuse_duplicates(records: list[Record]) -> None:
    """An exact duplicate would be packed twice, into two windows (issue 27.15)."""
    from whisper_finetune.data.manifest import record_identity

    seen: dict[tuple, str] = {}
    for record in records:
        first = seen.setdefault(record_identity(record), record.origin)
        if first != record.origin:
            raise ValueError(
                f"{record.origin}: the same record as {first} (it would be packed "
                "twice); remove one"
            )


def pack_manifest(config: PackConfig) -> PackResult:
    """Pack ``config.manifest`` into windows; see the module docstring.

    Returns:
        counts and the output path.

    Raises:
        whisper_finetune.data.audio.AudioError: an utterance's audio does not decode (names it).
        whisper_finetune.staging.UnsafeOutputError: ``output`` is the input manifest, or
            the wav folder holds anything but earlier windows (``window-NNNNNN.wav``).
    """
    from tqdm import tqdm

    from whisper_finetune.data.audio import SAMPLE_RATE, load_audio, write_wav

    output = Path(config.output)
    audio_dir = Path(config.audio_dir) if config.audio_dir else output.with_suffix("")
    _check_outputs(config.manifest, output, audio_dir)
    from whisper_finetune.data.recipes.validate import (
        _SPECIAL_NO_TIMESTAMPS,
        _SPECIAL_TIMESTAMPS,
        label_tokens,
        load_token_counter,
    )

    count, _ = load_token_counter(config.tokenizer)
    records = read_manifest(config.manifest)
    _refuse_duplicates(records)
    order = list(range(len(records)))
    if config.shuffle:
        random.Random(config.seed).shuffle(order)
    gap = np.zeros(int(config.gap * SAMPLE_RATE), dtype=np.float32)
    rng = random.Random(config.seed + 1)

    out: list[Record] = []
    window: dict[str, list] = {}  # language -> [(record, samples), ...]
    n_windows = n_single = n_unpacked = 0
    total = 0.0

    def flush(language: str) -> None:
        nonlocal n_windows, total
        items = window.pop(language, [])
        if not items:
            return
        pieces, sentences, text, t = [], [], "", 0.0
        for i, (record, samples) in enumerate(items):
            if i:
                pieces.append(gap)
                t += len(gap) / SAMPLE_RATE
            duration = len(samples) / SAMPLE_RATE
            sentences += [
                TimedText(round(s.start + t, 3), round(s.end + t, 3), s.text)
                for s in _timed(record, duration)
            ]
            text = _join(text, record.sentence)
            pieces.append(samples)
            t += duration
        path = audio_dir / f"window-{n_windows:06d}.wav"
        write_wav(path, np.concatenate(pieces))
        out.append(
            Record(
                str(path),
                text,
                round(t, 3),
                sentences=tuple(sentences),
                language=language or None,
                # the text before the window is the text before its first utterance
                prompt=items[0][0].prompt,
            )
        )
        n_windows += 1
        total += t

    def length(items) -> float:
        return sum(len(s) for _, s in items) / SAMPLE_RATE + config.gap * max(len(items) - 1, 0)

    def tokens(items) -> int:
        """The label tokens of a window of ``items`` (issue 27.15: windows of fast speech
        went past Whisper's 448): texts counted one by one, one more per join."""
        plain = sum(count(r.sentence) + 1 for r, _ in items) + _SPECIAL_NO_TIMESTAMPS
        timed = _SPECIAL_TIMESTAMPS + sum(
            count(t.text) + 2 for r, s in items for t in _timed(r, len(s) / SAMPLE_RATE)
        )
        return max(plain, timed)

    for i in tqdm(order, desc="pack", unit="utt"):
        record = records[i]
        samples = load_audio(record.audio_path, record.start_time, record.end_time)
        duration = len(samples) / SAMPLE_RATE
        _check_span(record, duration)
        too_many = label_tokens(record, count) > config.max_tokens  # validate reports it
        if not record.sentence.strip() or duration + config.gap > config.max_duration or too_many:
            out.append(record)  # no-speech samples and long utterances stay as they are
            n_unpacked += 1
            continue
        if config.keep_single and rng.random() < config.keep_single:
            out.append(record)
            n_single += 1
        language = record.language or ""
        items = window.setdefault(language, [])
        if items and (
            length(items) + config.gap + duration > config.max_duration
            or tokens([*items, (record, samples)]) > config.max_tokens
        ):
            flush(language)
            items = window.setdefault(language, [])
        items.append((record, samples))
    for language in list(window):
        flush(language)
    write_manifest(out, output)
    logger.info(
        "packed %d utterances into %d windows (%.1f min) + %d single + %d unpacked -> %s",
        len(records),
        n_windows,
        total / 60,
        n_single,
        n_unpacked,
        output,
    )
    return PackResult(output, len(records), n_windows, n_single, n_unpacked, total)
