"""Audio I/O: decode any common format to 16 kHz mono float32, and write WAV files.

Decoding goes through PyAV, whose wheels bundle FFmpeg (wav, flac, mp3, m4a/aac,
ogg/opus/vorbis, webm and more; no system FFmpeg is needed). WAV and FLAC files are
read with soundfile first, which is faster and seeks exactly to ``start``; PyAV is the
fallback when soundfile cannot read them.

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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz, the rate Whisper's feature extractor expects

AudioSource = str | os.PathLike | IO[bytes]

# Suffixes tried with soundfile (libsndfile) before PyAV. libsndfile also reads mp3,
# but trusts a truncated file's Xing header for its length, so mp3 goes to PyAV.
_SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac"})
# Samples per frame when a NumPy array is pushed through PyAV's resampler.
_RESAMPLE_CHUNK = 1 << 20


class AudioError(ValueError):
    """An audio file is empty, corrupt, not audio, or a requested slice is invalid.

    The message always names the file.
    """


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


def _reason(exc: Exception) -> str:
    """FFmpeg's description of an error, without the errno and file name PyAV adds."""
    return getattr(exc, "strerror", None) or str(exc)


def _downmix(frame) -> np.ndarray:
    """Average the channels of a planar float frame into one float32 vector."""
    data = frame.to_ndarray()  # shape (channels, samples) for planar formats
    if data.shape[0] == 1:
        return data[0]
    return data.mean(axis=0, dtype=np.float32)


def _valid_frames(frames: Iterator, name: str) -> Iterator:
    """Yield decoded frames, skipping the ones FFmpeg reports as invalid data."""
    import av

    skipped = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except av.error.InvalidDataError:
            skipped += 1
            continue
        yield frame
    if skipped:
        logger.warning("%s: skipped %d undecodable audio frame(s)", name, skipped)


def _resample_frames(frames: Iterable, sample_rate: int) -> Iterator[np.ndarray]:
    """Resample decoded frames to planar float at ``sample_rate`` and downmix each."""
    import av

    resampler = None
    setup = None
    for frame in frames:
        # A stream may change layout or rate midway (e.g. broadcast AAC); PyAV's
        # resampler refuses frames that differ from its first one, so start a new one.
        frame_setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        if frame_setup != setup:
            if resampler is not None:
                yield from (_downmix(f) for f in resampler.resample(None))
            resampler = av.AudioResampler(format="fltp", rate=sample_rate)
            setup = frame_setup
        yield from (_downmix(f) for f in resampler.resample(frame))
    if resampler is not None:
        yield from (_downmix(f) for f in resampler.resample(None))


def _decode_pyav(source: AudioSource, name: str, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream of a file with PyAV to mono float32."""
    import av

    try:
        opened = source if not isinstance(source, os.PathLike) else os.fspath(source)
        with av.open(opened, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"no audio stream in {name}")
            frames = _valid_frames(container.decode(container.streams.audio[0]), name)
            chunks = list(_resample_frames(frames, sample_rate))
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):  # e.g. permission denied: keep the OS error type
            raise
        raise AudioError(f"cannot decode audio file {name}: {_reason(exc)}") from exc
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _read_soundfile(
    path: str | os.PathLike, name: str, start: float, end: float | None
) -> tuple[np.ndarray, int] | None:
    """Read ``[start, end)`` of a WAV/FLAC file with soundfile, at its own rate.

    Returns:
        ``(mono float32 samples, sample rate)``, or ``None`` when soundfile cannot
        read the file and PyAV should try.
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
            last = total if end is None else min(round(end * rate), total)
            f.seek(min(first, total))
            data = f.read(max(last - first, 0), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        logger.debug("soundfile cannot read %s (%s); trying PyAV", name, exc)
        return None
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(mono), rate


def resample(samples: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono float32 audio with FFmpeg's resampler (through PyAV).

    Args:
        samples: 1-D float array.
        orig_rate: its sample rate in Hz.
        target_rate: the wanted sample rate in Hz.

    Returns:
        The resampled 1-D float32 array (``samples`` itself when the rates match).
    """
    samples = np.asarray(samples, dtype=np.float32)
    if orig_rate == target_rate or samples.size == 0:
        return samples
    import av

    def frames() -> Iterator:
        for i in range(0, samples.size, _RESAMPLE_CHUNK):
            chunk = np.ascontiguousarray(samples[None, i : i + _RESAMPLE_CHUNK])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = orig_rate
            yield frame

    return np.concatenate(list(_resample_frames(frames(), target_rate)))


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

    read = None
    if isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() in _SOUNDFILE_SUFFIXES:
        read = _read_soundfile(path, name, start, end)
    if read is not None:
        samples, rate = read
        if samples.size == 0:
            raise AudioError(f"audio file has no samples: {name}")
        return resample(samples, rate, sample_rate)

    samples = _decode_pyav(path, name, sample_rate)
    if samples.size == 0:
        raise AudioError(f"audio file has no samples: {name}")
    first = round(start * sample_rate)
    if first >= samples.size:
        raise AudioError(
            f"{name}: start ({start}s) is beyond the end of the audio "
            f"({samples.size / sample_rate:.3f}s)"
        )
    last = samples.size if end is None else min(round(end * sample_rate), samples.size)
    if first == 0 and last == samples.size:
        return samples
    return samples[first:last].copy()


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
            samples = sum(f.samples for f in _valid_frames(container.decode(stream), name))
            return samples / stream.rate if stream.rate else 0.0
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise
        raise AudioError(f"cannot read audio file {name}: {_reason(exc)}") from exc


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
