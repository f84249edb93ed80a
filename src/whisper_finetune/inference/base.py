"""What every backend shares: the transcriber protocol, audio input, segment clean-up.

Each backend (``hf``, ``ct2``, ``whispercpp``) is one module that takes a
:class:`~whisper_finetune.inference.transcript.DecodeOptions` and returns a
:class:`~whisper_finetune.inference.transcript.Transcript`; :mod:`.loader` picks one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE, load_audio
from whisper_finetune.inference.transcript import (
    DEFAULT_OPTIONS,
    DecodeOptions,
    Segment,
    Transcript,
)

CHUNK_SECONDS = 30  # Whisper's input window
CHUNK_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480,000 samples
BACKENDS = ("transformers", "ct2", "whispercpp")
CT2_ONLY = ("hotwords", "vad_filter", "word_timestamps")

AudioInput = str | os.PathLike | np.ndarray


@runtime_checkable
class Transcriber(Protocol):
    """What evaluation, the CLI and the server need from a backend."""

    def transcribe(self, audio: AudioInput, options: DecodeOptions = DEFAULT_OPTIONS) -> Transcript:
        """Transcribe one audio: a file path, or 16 kHz mono float32 samples."""
        ...

    def transcribe_batch(
        self,
        audios: Sequence[np.ndarray],
        options: DecodeOptions = DEFAULT_OPTIONS,
        batch_size: int | None = None,
    ) -> list[Transcript]:
        """Transcribe several 16 kHz mono float32 clips; results in the same order.

        ``batch_size``: at most that many clips decoded together (default: the
        transcriber's own choice); a backend that decodes one clip at a time ignores it.
        """
        ...


def as_samples(audio: AudioInput) -> np.ndarray:
    """A path (decoded with :func:`~whisper_finetune.data.audio.load_audio`) or samples, as float32.

    Raises:
        ValueError: if an array is not one-dimensional.
    """
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio)
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio samples must be 1-D (16 kHz mono), got shape {samples.shape}")
    return samples


def clamp_segments(segments: list[Segment], duration: float) -> list[Segment]:
    """Drop empty segments and those that start past the audio (in its padding); keep
    times within ``[0, duration]`` and in order."""
    out = []
    for s in segments:
        if not s.text or (duration > 0 and s.start >= duration):
            continue
        end = min(max(s.end, s.start), duration)
        out.append(Segment(min(s.start, end), end, s.text, s.words))
    return out


VAD_MARGIN_S = 0.5  # a segment this close to detected speech is kept


def speech_regions(samples: np.ndarray) -> list[tuple[float, float]]:
    """Where the Silero VAD (faster-whisper's) hears speech, in seconds."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    stamps = get_speech_timestamps(samples, VadOptions(), sampling_rate=SAMPLE_RATE)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def keep_speech(
    transcript: Transcript, regions: list[tuple[float, float]], margin: float = VAD_MARGIN_S
) -> Transcript:
    """The transcript without the segments that lie outside every speech region.

    Whisper invents text for silence, noise and music (loops, ``"谢谢观看"``); a segment
    that overlaps no region the VAD found (widened by ``margin``) is such an invention.
    """
    if not transcript.segments:
        return transcript if regions else Transcript("", transcript.language, transcript.duration)
    kept = [
        s
        for s in transcript.segments
        if any(s.start < end + margin and s.end > start - margin for start, end in regions)
    ]
    if len(kept) == len(transcript.segments):
        return transcript
    return Transcript.from_segments(kept, transcript.language, transcript.duration)


def gated(
    clips: Sequence[np.ndarray],
    options: DecodeOptions,
    decode: Callable[[list[np.ndarray]], list[Transcript]],
) -> list[Transcript]:
    """Decode ``clips`` with ``decode``, behind the VAD gate when the options ask for it.

    With ``options.robust`` and ``options.vad_gate``, a clip without speech is not
    decoded at all (empty transcript) and the others lose the segments outside speech.
    """
    if not (options.robust and options.vad_gate):
        return decode(list(clips))
    regions = [speech_regions(c) if c.size else [] for c in clips]
    results: list[Transcript] = [
        Transcript("", options.language, c.size / SAMPLE_RATE) for c in clips
    ]
    speech = [i for i, r in enumerate(regions) if r]
    if speech:
        decoded = decode([clips[i] for i in speech])
        for i, t in zip(speech, decoded, strict=True):
            results[i] = keep_speech(t, regions[i])
    return results


PROGRESS_MIN_SECONDS = 30.0  # audio longer than one window shows a progress bar on stderr


def progress_bar(duration: float, enabled: bool = True):
    """A tqdm bar on stderr in seconds of audio, for long audio; disabled otherwise."""
    from tqdm.auto import tqdm

    return tqdm(
        total=round(duration, 1),
        unit="s",
        desc="transcribing",
        disable=not enabled or duration < PROGRESS_MIN_SECONDS,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
    )
