"""What every backend shares: the transcriber protocol, audio input, segment clean-up.

Each backend (``hf``, ``ct2``, ``whispercpp``) is one module that takes a
:class:`~whisper_finetune.inference.transcript.DecodeOptions` and returns a
:class:`~whisper_finetune.inference.transcript.Transcript`; :mod:`.loader` picks one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
        self, audios: Sequence[np.ndarray], options: DecodeOptions = DEFAULT_OPTIONS
    ) -> list[Transcript]:
        """Transcribe several 16 kHz mono float32 clips; results in the same order."""
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
    """Drop empty segments and keep times within ``[0, duration]`` and in order."""
    out = []
    for s in segments:
        if not s.text:
            continue
        end = min(max(s.end, s.start), duration)
        out.append(Segment(min(s.start, end), end, s.text, s.words))
    return out
