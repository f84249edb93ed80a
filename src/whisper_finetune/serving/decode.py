"""The work of one request, run in a worker thread: decode the upload, transcribe it.

On the CTranslate2 backend segments come from faster-whisper's lazy generator one at a
time, so each can be handed on (``emit``) as soon as it is decoded and the job can stop
between two segments when its client has gone. Other backends transcribe in one call
and hand the segments on at the end.

Nothing here touches a path a request names: the upload is read from the temporary
file the multipart parser spooled it to, and its file name is only used in messages.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import IO, Any

from whisper_finetune.data.audio import SAMPLE_RATE, load_audio
from whisper_finetune.inference.base import clamp_segments
from whisper_finetune.inference.transcript import DecodeOptions, Segment, Transcript, Word
from whisper_finetune.serving.queue import Cancelled


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
    """
    from whisper_finetune.data.audio import AudioError

    job.file.seek(0)
    try:
        samples = load_audio(job.file)
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


def run(
    transcriber,
    job: Job,
    cancel: threading.Event,
    emit: Callable[[str, Any], None] | None = None,
) -> Result:
    """Decode and transcribe; ``emit("audio", seconds)`` then ``emit("segment", (seg, detail))``.

    Raises:
        AudioUnreadable: the upload is not decodable audio.
        Cancelled: ``cancel`` was set (the client went away).
    """
    samples = read_samples(job)
    duration = samples.size / SAMPLE_RATE
    if emit:
        emit("audio", duration)
    if cancel.is_set():
        raise Cancelled("client disconnected")
    segments: list[Segment] = []
    details: list[dict[str, Any]] = []
    language = job.options.language
    if getattr(transcriber, "backend", "") == "ct2" and hasattr(transcriber, "stream"):
        raw, info = transcriber.stream(samples, job.options)
        language = info.language
        for s in raw:  # each step decodes one more segment
            if cancel.is_set():
                raise Cancelled("client disconnected")
            kept = clamp_segments([_ct2_segment(s)], duration)
            if not kept:
                continue
            segment = job.normalize.segment(kept[0])
            detail = _detail(s, len(segments))
            segments.append(segment)
            details.append(detail)
            if emit:
                emit("segment", (segment, detail))
        transcript = Transcript.from_segments(segments, language, duration)
    else:
        transcript = job.normalize.transcript(transcriber.transcribe(samples, job.options))
        for i, segment in enumerate(transcript.segments):
            details.append(_detail(None, i))
            if emit:
                emit("segment", (segment, details[-1]))
    return Result(transcript, details)
