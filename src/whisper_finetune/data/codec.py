"""Frame-level audio work with PyAV: decode, downmix, resample, and decode a slice by seeking.

:mod:`whisper_finetune.data.audio` is the public face; this module holds the pieces it
builds on, so that each stays small. Every error names the file.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator

import numpy as np

logger = logging.getLogger("whisper_finetune.data.audio")

SAMPLE_RATE = 16000  # Hz, the rate Whisper's feature extractor expects
# Samples per frame when a NumPy array is pushed through PyAV's resampler.
_RESAMPLE_CHUNK = 1 << 20
# Audio decoded before a slice, for codecs that need frames to settle after a seek
# (Opus pre-roll, the MP3 bit reservoir); and slices that start earlier than
# _SEEK_MIN_S are decoded from the beginning, without a seek.
_PREROLL_S = 0.5  # Opus asks for 80 ms; MP3's reservoir and AAC reach back a frame or two
_POSTROLL_S = 0.05  # after the slice, only the resampler's filter needs audio
_SEEK_MIN_S = 5.0


class AudioError(ValueError):
    """An audio file is empty, corrupt, not audio, or a requested slice is invalid.

    The message always names the file.
    """


def reason(exc: Exception) -> str:
    """FFmpeg's description of an error, without the errno and file name PyAV adds."""
    return getattr(exc, "strerror", None) or str(exc)


def _downmix(frame) -> np.ndarray:
    """Average the channels of a planar float frame into one float32 vector."""
    data = frame.to_ndarray()  # shape (channels, samples) for planar formats
    if data.shape[0] == 1:
        return data[0]
    return data.mean(axis=0, dtype=np.float32)


def valid_frames(frames: Iterator, name: str) -> Iterator:
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


def resample_frames(frames: Iterable, sample_rate: int) -> Iterator[np.ndarray]:
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

    return np.concatenate(list(resample_frames(frames(), target_rate)))


def cut(
    samples: np.ndarray,
    origin: int,
    start: float,
    end: float | None,
    sample_rate: int,
    partial: bool,
) -> np.ndarray:
    """``[start, end)`` of ``samples``, whose first sample is sample ``origin`` of the file."""
    first = round(start * sample_rate) - origin
    last = samples.size if end is None else min(round(end * sample_rate) - origin, samples.size)
    if first == 0 and last == samples.size and not partial:
        return samples
    return samples[first:last].copy()


def _frame_mono(frame) -> np.ndarray:
    """A decoded frame as mono float32 at its own rate (channels averaged)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    kind = data.dtype
    data = data.astype(np.float32)
    if kind.kind == "i":
        data /= float(np.iinfo(kind).max) + 1.0
    elif kind.kind == "u":
        data = (data - 128.0) / 128.0
    return data[0] if channels == 1 else data.mean(axis=0, dtype=np.float32)


def decode_slice(
    path: str | os.PathLike, name: str, start: float, end: float | None, sample_rate: int
) -> np.ndarray | None:
    """Decode only ``[start, end)`` of a compressed file: seek, then stop after ``end``.

    Decoding starts ``_PREROLL_S`` before the slice (codecs such as Opus and MP3 need
    a few frames to settle after a seek) at a sample where the source and target rates'
    grids meet, so the result equals a cut of the whole file's decode within the
    resampler's rounding. Returns ``None`` when the stream does not allow it (no
    timestamps, a rate change) and the caller decodes the whole file.
    """
    import av

    with av.open(os.fspath(path), mode="r", metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioError(f"no audio stream in {name}")
        stream = container.streams.audio[0]
        tb = stream.time_base
        if tb is None or not stream.rate:
            return None
        rate = stream.rate
        origin = stream.start_time * tb if stream.start_time is not None else 0
        lo_s = max(start - _PREROLL_S, 0.0)
        if lo_s > _SEEK_MIN_S:
            container.seek(int((origin + lo_s) / tb), stream=stream)  # keyframe at or before
        chunks, first, expected = [], None, None
        for frame in valid_frames(container.decode(stream), name):
            if frame.pts is None or frame.sample_rate != rate:
                return None
            at = round((frame.pts * tb - origin) * rate)  # first sample's index in the file
            if at + frame.samples <= lo_s * rate:
                continue
            if first is None:
                if at > lo_s * rate + rate * 0.01:  # the seek overshot: decode it all
                    return None
                first = expected = at
            if at != expected:  # a gap or overlap in the timestamps
                return None
            chunks.append(_frame_mono(frame))
            expected = at + frame.samples
            if end is not None and at >= (end + _POSTROLL_S) * rate:
                break
    if first is None or expected * sample_rate <= start * rate * sample_rate:
        return None  # nothing at or after start: the full decode gives the right error
    samples = np.concatenate(chunks)
    step = rate // math.gcd(rate, sample_rate)
    skip = -first % step if first >= 0 else -first  # to the next shared grid point
    out = resample(samples[skip:], rate, sample_rate)
    return cut(out, (first + skip) * sample_rate // rate, start, end, sample_rate, True)


class AudioTooLong(AudioError):
    """The audio lasts longer than the caller allows; found while decoding, or from a
    header that gives the exact length (FLAC, WAV), before any of it is decoded."""

    def __init__(self, name: str, max_seconds: float, seen: float, declared: bool) -> None:
        how = "its header says" if declared else "decoding passed"
        super().__init__(
            f"{name}: the audio lasts longer than the limit of {max_seconds:g} s "
            f"({how} {seen:.1f} s); send a shorter file"
        )
        self.max_seconds = max_seconds
        self.seconds = seen


# codecs whose header gives the exact number of samples (FLAC's STREAMINFO, a WAV's size)
_EXACT_LENGTH_CODECS = ("flac", "pcm_")
_BOUNDED_FIRST_BUFFER = 1 << 28  # samples reserved at once (1 GiB, touched only as filled)


def decode_bounded(
    source, name: str, max_seconds: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Decode the first audio stream (a path or a binary file) to mono float32, refusing
    audio longer than ``max_seconds`` frame by frame, before the rest is decoded.

    A small file can hold hours of audio (a FLAC of silence compresses ~1000:1): the
    check is on the decoded length, never the file size. The samples go into one buffer
    reserved for the limit (memory is used only as it is filled), so a refused file
    costs at most the limit's samples, returned to the system at once.

    Raises:
        AudioTooLong: longer than ``max_seconds``.
        AudioError: not decodable audio.
    """
    import av

    limit = max(1, math.ceil(max_seconds * sample_rate))
    buffer = np.empty(min(limit, _BOUNDED_FIRST_BUFFER), dtype=np.float32)
    filled = 0
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"no audio stream in {name}")
            stream = container.streams.audio[0]
            codec = stream.codec_context.name or ""
            if (
                codec.startswith(_EXACT_LENGTH_CODECS)
                and stream.duration
                and stream.time_base is not None
                and float(stream.duration * stream.time_base) > max_seconds
            ):
                raise AudioTooLong(
                    name, max_seconds, float(stream.duration * stream.time_base), True
                )
            frames = valid_frames(container.decode(stream), name)
            for chunk in resample_frames(frames, sample_rate):
                if filled + chunk.size > limit:
                    raise AudioTooLong(
                        name, max_seconds, (filled + chunk.size) / sample_rate, False
                    )
                if (
                    filled + chunk.size > buffer.size
                ):  # only when the limit exceeds the first buffer
                    grown = np.empty(min(limit, 2 * buffer.size + chunk.size), dtype=np.float32)
                    grown[:filled] = buffer[:filled]
                    buffer = grown
                buffer[filled : filled + chunk.size] = chunk
                filled += chunk.size
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):  # e.g. permission denied: keep the OS error type
            raise
        raise AudioError(f"cannot decode audio file {name}: {reason(exc)}") from exc
    return buffer[:filled]
