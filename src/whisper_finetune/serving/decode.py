"""The work of one request, run in a worker thread: decode the upload, transcribe it.

On the CTranslate2 backend segments come from faster-whisper's lazy generator one at a
time, so each can be handed on (``emit``) as soon as it is decoded and the job can stop
between two segments when its client has gone. Other backends transcribe in one call
and hand the segments on at the end.

Nothing here touches a path a request names: the upload is read from the temporary
file the multipart parser spooled it to, and its file name is only used in messages.

Long audio is bounded twice: the upload is decoded frame by frame and refused (HTTP 413)
as soon as it passes the job's ``max_seconds`` (a small FLAC can hold hours of silence),
and audio longer than :data:`PIECE_SECONDS` is transcribed in pieces cut at its quietest
half second near each boundary, so no backend ever builds a log-mel of the whole file
(faster-whisper's sequential decoder computes the features of all the audio it is given
at once: gigabytes for an hour). A job is also cancelled between two pieces.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import IO, Any

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE, load_audio
from whisper_finetune.inference.base import clamp_segments
from whisper_finetune.inference.transcript import DecodeOptions, Segment, Transcript, Word
from whisper_finetune.serving.errors import ApiError
from whisper_finetune.serving.queue import Cancelled

PIECE_SECONDS = 300.0  # longer audio is transcribed in pieces of about this length
QUIET_SEARCH_SECONDS = 20.0  # each piece ends at the quietest half second of its last 20 s


@dataclass(frozen=True)
class Normalize:
    """The Chinese options every endpoint takes."""

    to_simple: bool = False
    remove_pun: bool = False

    def segment(self, segment: Segment) -> Segment:
        if not (self.to_simple or self.remove_pun):
            return segment
        one = Transcript.from_segments((segment,), None, segment.end)
        text = one.normalized(remove_punctuation=self.remove_pun, to_simplified=self.to_simple).text
        return replace(segment, text=text)

    def transcript(self, transcript: Transcript) -> Transcript:
        return transcript.normalized(
            remove_punctuation=self.remove_pun, to_simplified=self.to_simple
        )


@dataclass(frozen=True)
class Job:
    """What one request asks for."""

    file: IO[bytes]
    filename: str
    options: DecodeOptions
    normalize: Normalize = Normalize()
    # decoded audio longer than this is refused (HTTP 413) while decoding; None: no limit
    max_seconds: float | None = None


@dataclass
class Result:
    """A finished transcription and, per segment, what faster-whisper knew of it."""

    transcript: Transcript
    details: list[dict[str, Any]] = field(default_factory=list)


class AudioUnreadable(ValueError):
    """The upload is not audio this server can decode; the message names the upload."""


def safe_name(filename: str | None) -> str:
    """The upload's file name for messages: its last part, printable, at most 80 chars."""
    name = (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1] or "upload"
    name = "".join(ch if ch.isprintable() else "?" for ch in name)
    return name[:80]


def read_samples(job: Job):
    """The upload as 16 kHz mono float32 samples.

    Raises:
        AudioUnreadable: empty, truncated, or not audio at all.
        ApiError: 413 when the audio lasts longer than ``job.max_seconds``.
    """
    from whisper_finetune.data.audio import AudioError
    from whisper_finetune.data.codec import AudioTooLong, decode_bounded

    job.file.seek(0)
    try:
        if job.max_seconds is None:
            samples = load_audio(job.file)
        else:
            samples = decode_bounded(job.file, job.filename, job.max_seconds)
    except AudioTooLong as exc:
        raise ApiError(413, str(exc), code="audio_too_long") from exc
    except (AudioError, OSError, RuntimeError, EOFError) as exc:
        # the upload has no path: drop the placeholder name the decoder gives it
        reason = re.sub(r"\s*(<in-memory audio>|\bNone)(?=:)", "", str(exc))
        raise AudioUnreadable(f"{job.filename}: cannot decode the audio ({reason})") from exc
    if samples.size == 0:
        raise AudioUnreadable(f"{job.filename}: the file holds no audio samples")
    return samples


def _detail(s, index: int) -> dict[str, Any]:
    return {
        "id": index,
        "seek": int(getattr(s, "seek", 0)),
        "tokens": [int(t) for t in getattr(s, "tokens", ())],
        "temperature": float(getattr(s, "temperature", 0.0) or 0.0),
        "avg_logprob": float(getattr(s, "avg_logprob", 0.0)),
        "compression_ratio": float(getattr(s, "compression_ratio", 0.0)),
        "no_speech_prob": float(getattr(s, "no_speech_prob", 0.0)),
    }


def _ct2_segment(s) -> Segment:
    words = tuple(
        Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in (s.words or ())
    )
    return Segment(float(s.start), float(s.end), s.text.strip(), words)


def pieces(samples: np.ndarray) -> list[tuple[int, int]]:
    """``(first, end)`` sample ranges of about :data:`PIECE_SECONDS`; one for shorter audio.

    Each piece but the last ends at the middle of the quietest half second (0.1 s steps)
    of its last :data:`QUIET_SEARCH_SECONDS`, so that no word is cut in two.
    """
    piece, search = int(PIECE_SECONDS * SAMPLE_RATE), int(QUIET_SEARCH_SECONDS * SAMPLE_RATE)
    step, window = SAMPLE_RATE // 10, 5
    search = max(search // step, window) * step
    bounds, first = [], 0
    while samples.size - first > piece:
        lo = first + piece - search
        frames = samples[lo : lo + search].reshape(-1, step).astype(np.float64)
        energy = np.convolve((frames**2).sum(axis=1), np.ones(window), mode="valid")
        quietest = np.flatnonzero(energy <= energy.min() * 1.05 + 1e-9)[-1]  # the latest of ties
        end = lo + (int(quietest) + window // 2) * step
        bounds.append((first, end))
        first = end
    bounds.append((first, samples.size))
    return bounds


def _shifted(segment: Segment, offset: float) -> Segment:
    if not offset:
        return segment
    words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in segment.words)
    return replace(segment, start=segment.start + offset, end=segment.end + offset, words=words)


def run(
    transcriber,
    job: Job,
    cancel: threading.Event,
    emit: Callable[[str, Any], None] | None = None,
) -> Result:
    """Decode and transcribe; ``emit("audio", seconds)`` then ``emit("segment", (seg, detail))``.

    Raises:
        AudioUnreadable: the upload is not decodable audio.
        ApiError: 413, the audio is longer than the job allows.
        Cancelled: ``cancel`` was set (the client went away).
    """
    samples = read_samples(job)
    duration = samples.size / SAMPLE_RATE
    if emit:
        emit("audio", duration)
    segments: list[Segment] = []
    details: list[dict[str, Any]] = []
    options = job.options
    streams = getattr(transcriber, "backend", "") == "ct2" and hasattr(transcriber, "stream")
    for first, end in pieces(samples):
        if cancel.is_set():
            raise Cancelled("client disconnected")
        piece, offset = samples[first:end], first / SAMPLE_RATE
        if streams:
            raw, info = transcriber.stream(piece, options)
            if options.language is None and info.language:  # detected once, kept for the rest
                options = replace(options, language=info.language)
            decoded = ((_ct2_segment(s), s) for s in raw)  # each step decodes one more segment
        else:
            transcript = transcriber.transcribe(piece, options)
            if options.language is None and transcript.language:
                options = replace(options, language=transcript.language)
            decoded = ((s, None) for s in transcript.segments)
        for segment, source in decoded:
            if cancel.is_set():
                raise Cancelled("client disconnected")
            kept = clamp_segments([segment], piece.size / SAMPLE_RATE)
            if not kept:
                continue
            segment = job.normalize.segment(_shifted(kept[0], offset))
            detail = _detail(source, len(segments))
            detail["seek"] += first * 100 // SAMPLE_RATE  # 10 ms frames from the file's start
            segments.append(segment)
            details.append(detail)
            if emit:
                emit("segment", (segment, detail))
    return Result(Transcript.from_segments(segments, options.language, duration), details)
