"""Audio I/O: decode any common format to 16 kHz mono float32, and write WAV files.

Decoding goes through PyAV, whose wheels bundle FFmpeg (wav, flac, mp3, m4a/aac,
ogg/opus/vorbis, webm and more; no system FFmpeg is needed). WAV and FLAC files are
read with soundfile first, which is faster and seeks exactly to ``start``; PyAV is the
fallback when soundfile cannot read them. A slice of a compressed file (a WenetSpeech
segment of an hour-long opus) seeks too and decodes only the slice. A WAV file shorter
than its header says is read as far as it goes, with a warning naming both lengths.

Multi-channel audio is resampled per channel and then averaged to mono. The mean is
taken here rather than by FFmpeg's rematrixing because, for float output, FFmpeg mixes
stereo as ``0.707 * (L + R)``, which is 3 dB louder than the source and can exceed 1.0.

Every failure to read a file raises :class:`AudioError` (a ``ValueError``) or
``FileNotFoundError``, and the message names the file.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import IO

import numpy as np

from whisper_finetune.data.codec import (
    SAMPLE_RATE,
    AudioError,
    cut,
    decode_slice,
    reason,
    resample,
    resample_frames,
    valid_frames,
)

__all__ = ["SAMPLE_RATE", "AudioError", "audio_duration", "load_audio", "resample", "write_wav"]

logger = logging.getLogger(__name__)

AudioSource = str | os.PathLike | IO[bytes]

# Suffixes tried with soundfile (libsndfile) before PyAV. libsndfile also reads mp3,
# but trusts a truncated file's Xing header for its length, so mp3 goes to PyAV.
_SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac"})
# Audio read either side of a WAV/FLAC slice, for the resampler's filter.
_CONTEXT_S = 0.05


def _source_name(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<in-memory audio>"))


def _check_file(source: AudioSource, name: str) -> None:
    """Fail early, with a clear message, on a missing, non-regular or empty file."""
    if not isinstance(source, (str, os.PathLike)):
        return
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {name}")
    if not path.is_file():
        raise AudioError(f"not a regular file: {name}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {name}")


def _check_range(start: float | None, end: float | None, name: str) -> tuple[float, float | None]:
    """Validate the requested slice in seconds; return ``(start, end)`` with start set."""
    start = 0.0 if start is None else float(start)
    if not (math.isfinite(start) and start >= 0):
        raise AudioError(f"{name}: start must be a finite number >= 0 seconds, got {start}")
    if end is not None:
        end = float(end)
        if not (math.isfinite(end) and end > start):
            raise AudioError(
                f"{name}: end ({end}s) must be finite and greater than start ({start}s)"
            )
    return start, end


def _decode_pyav(source: AudioSource, name: str, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream of a file with PyAV to mono float32."""
    import av

    try:
        opened = source if not isinstance(source, os.PathLike) else os.fspath(source)
        with av.open(opened, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"no audio stream in {name}")
            frames = valid_frames(container.decode(container.streams.audio[0]), name)
            chunks = list(resample_frames(frames, sample_rate))
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):  # e.g. permission denied: keep the OS error type
            raise
        raise AudioError(f"cannot decode audio file {name}: {reason(exc)}") from exc
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _read_soundfile(
    path: str | os.PathLike, name: str, start: float, end: float | None, sample_rate: int
) -> np.ndarray | None:
    """Read ``[start, end)`` of a WAV/FLAC file with soundfile, seeking, and resample it.

    A little audio either side of the slice goes through the resampler too, from a
    sample where both rates' grids meet, so the slice equals a cut of the whole file's
    decode. Returns ``None`` when soundfile cannot read the file and PyAV should try.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(os.fspath(path)) as f:
            rate, total = f.samplerate, f.frames
            first = round(start * rate)
            if total > 0 and first >= total:
                raise AudioError(
                    f"{name}: start ({start}s) is beyond the end of the audio ({total / rate:.3f}s)"
                )
            step = rate // math.gcd(rate, sample_rate)  # source samples per shared grid point
            lo = int(max(start - _CONTEXT_S, 0.0) * rate) // step * step
            hi = total if end is None else min(round((end + _CONTEXT_S) * rate), total)
            f.seek(min(lo, total))
            data = f.read(max(hi - lo, 0), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        logger.debug("soundfile cannot read %s (%s); trying PyAV", name, exc)
        return None
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if mono.size == 0:
        raise AudioError(f"audio file has no samples: {name}")
    return cut(
        resample(np.ascontiguousarray(mono), rate, sample_rate),
        lo * sample_rate // rate,
        start,
        end,
        sample_rate,
        lo > 0 or hi < total,
    )


def load_audio(
    path: AudioSource,
    start: float | None = None,
    end: float | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Decode an audio file to mono float32 at ``sample_rate``, optionally a slice of it.

    Any sample rate and channel count is accepted: channels are averaged, and the audio
    is resampled with FFmpeg's resampler.

    Args:
        path: a file path (wav, flac, mp3, m4a, ogg/opus, webm, ... anything FFmpeg
            reads), or a binary file object.
        start: start of the slice in seconds (default: the beginning).
        end: end of the slice in seconds, exclusive (default: the end of the file). An
            end past the end of the file is clipped to it.
        sample_rate: output sample rate in Hz.

    Returns:
        A 1-D ``float32`` array with values nominally in [-1, 1].

    Raises:
        FileNotFoundError: if the file does not exist.
        AudioError: if the file is empty, corrupt or not audio, holds no samples, or
            the slice is invalid (negative start, end not after start, or start beyond
            the end of the file). The message names the file.
    """
    name = _source_name(path)
    if not (isinstance(sample_rate, int) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    start, end = _check_range(start, end, name)
    _check_file(path, name)

    is_path = isinstance(path, (str, os.PathLike))
    if is_path and Path(path).suffix.lower() in _SOUNDFILE_SUFFIXES:
        _warn_if_truncated(path, name)
        samples = _read_soundfile(path, name, start, end, sample_rate)
        if samples is not None:
            return samples
    if is_path and (start > 0 or end is not None):
        try:
            samples = decode_slice(path, name, start, end, sample_rate)
        except av_errors() as exc:
            logger.debug("%s: seeking failed (%s); decoding the whole file", name, exc)
            samples = None
        if samples is not None:
            return samples

    samples = _decode_pyav(path, name, sample_rate)
    if samples.size == 0:
        raise AudioError(f"audio file has no samples: {name}")
    first = round(start * sample_rate)
    if first >= samples.size:
        raise AudioError(
            f"{name}: start ({start}s) is beyond the end of the audio "
            f"({samples.size / sample_rate:.3f}s)"
        )
    return cut(samples, 0, start, end, sample_rate, False)


def av_errors() -> tuple[type[Exception], ...]:
    import av

    return (av.error.FFmpegError,)


_truncation_warned: set[str] = set()


def _warn_if_truncated(path: str | os.PathLike, name: str) -> None:
    """Log once per file when a WAV holds less audio than its header promises."""
    from whisper_finetune.data.wavheader import wav_truncation

    if name in _truncation_warned:
        return
    found = wav_truncation(path)
    if found:
        _truncation_warned.add(name)
        logger.warning(
            "%s is truncated: its header promises %.2f s but the file holds %.2f s; "
            "only the audio present is used",
            name,
            *found,
        )


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, from its header where possible.

    WAV/FLAC durations are exact. For other formats the container's duration is used
    (compressed formats may differ from the decoded length by a codec frame, a few tens
    of milliseconds); when the container has none (e.g. some webm), the file is decoded.

    Args:
        path: the audio file.

    Returns:
        The duration in seconds (0.0 for a valid file that holds no samples).

    Raises:
        FileNotFoundError: if the file does not exist.
        AudioError: if the file is empty, corrupt or not audio.
    """
    name = _source_name(path)
    _check_file(path, name)
    if Path(path).suffix.lower() in _SOUNDFILE_SUFFIXES:
        import soundfile as sf

        _warn_if_truncated(path, name)
        try:
            info = sf.info(os.fspath(path))
            return info.frames / info.samplerate
        except (sf.LibsndfileError, RuntimeError) as exc:
            logger.debug("soundfile cannot read %s (%s); trying PyAV", name, exc)

    import av

    try:
        with av.open(os.fspath(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"no audio stream in {name}")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
            samples = sum(f.samples for f in valid_frames(container.decode(stream), name))
            return samples / stream.rate if stream.rate else 0.0
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise
        raise AudioError(f"cannot read audio file {name}: {reason(exc)}") from exc


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write audio as a 16-bit PCM WAV file, atomically (temporary file, then rename).

    Args:
        path: destination; parent folders are created.
        samples: float audio in [-1, 1] (values outside are clipped) or int16 PCM,
            shaped ``(samples,)`` or ``(samples, channels)``.
        sample_rate: sample rate in Hz.

    Returns:
        The path written.

    Raises:
        ValueError: if ``samples`` is not 1-D/2-D or holds NaN or infinity.
    """
    import soundfile as sf

    data = np.asarray(samples)
    if data.ndim not in (1, 2):
        raise ValueError(f"samples must be 1-D or (samples, channels), got shape {data.shape}")
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise ValueError(f"samples to write to {os.fspath(path)} contain NaN or infinity")
        # Clip here rather than rely on libsndfile's float-to-int clipping setting.
        data = np.clip(data, -1.0, 1.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        sf.write(os.fspath(tmp), data, int(sample_rate), subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
