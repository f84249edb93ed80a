"""What a transcription is: decoding options in, a typed transcript out, and its formats.

Both backends (transformers and CTranslate2/faster-whisper) take the same
:class:`DecodeOptions` and return the same :class:`Transcript`, so evaluation, the CLI
and the server never care which backend ran. A transcript renders as the JSON the
original ``infer.py`` printed (``{"language", "duration", "results", "text"}``), or as
plain text, SubRip (``.srt``) or WebVTT (``.vtt``).

This module imports nothing heavy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

TASKS = ("transcribe", "translate")
OUTPUT_FORMATS = ("json", "txt", "srt", "vtt")


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode; shared by every backend. Vary it with :func:`dataclasses.replace`.

    The defaults are greedy decoding with segment timestamps and no conditioning on the
    previous window's text, which makes the two backends give the same text on the
    same model and avoids the repetition loops that conditioning causes on long audio.
    """

    # language of the audio ("zh", "en", ...); None detects it from the first 30 s
    language: str | None = field(
        default=None,
        metadata={"help": "language code such as zh or en; none = detect from the first 30 s"},
    )
    # "transcribe" (X -> X) or "translate" (X -> English)
    task: str = field(
        default="transcribe", metadata={"help": "transcribe or translate", "choices": TASKS}
    )
    # 1 is greedy search
    beam_size: int = field(
        default=1, metadata={"help": "beam width; 1 is greedy search", "aliases": ["num_beams"]}
    )
    # 0 is deterministic; > 0 samples (no fallback schedule: one temperature only)
    temperature: float = field(
        default=0.0, metadata={"help": "sampling temperature; 0 = deterministic"}
    )
    # predict timestamp tokens; False gives one segment per 30 s window
    without_timestamps: bool = field(
        default=False,
        metadata={"help": "decode without timestamp tokens (one segment per 30 s window)"},
    )
    # feed the previous window's text as a prompt to the next one (long audio)
    condition_on_previous_text: bool = field(
        default=False, metadata={"help": "prompt each 30 s window with the previous window's text"}
    )
    # cap on tokens decoded per 30 s window (None: up to the model's 448-token context)
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "most tokens decoded per 30 s window; none = no cap"}
    )
    # text that primes the decoder, e.g. "以下是普通话的句子。" to favour simplified Chinese
    initial_prompt: str | None = field(
        default=None, metadata={"help": "text that primes the decoder, e.g. 以下是普通话的句子。"}
    )
    # ct2 only: words or phrases to bias towards (faster-whisper's hotwords)
    hotwords: str | None = field(
        default=None, metadata={"help": "ct2 only: phrases to bias decoding towards"}
    )
    # ct2 only: drop non-speech with the Silero VAD that ships in faster-whisper
    vad_filter: bool = field(
        default=False, metadata={"help": "ct2 only: skip non-speech (Silero VAD)"}
    )
    # ct2 only: per-word timestamps from cross-attention alignment
    word_timestamps: bool = field(
        default=False, metadata={"help": "ct2 only: add word-level timestamps"}
    )

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.language is not None:
            object.__setattr__(self, "language", language_code(self.language))


def language_code(language: str) -> str | None:
    """``"zh"`` for ``"zh"``, ``"Chinese"`` or ``"mandarin"``; None for an empty string.

    The original scripts took names (``--language=chinese``); faster-whisper takes codes.

    Raises:
        ValueError: for a name Whisper does not know.
    """
    language = language.strip().lower()
    if not language:
        return None
    if len(language) <= 3:  # a code ("zh", "yue", "haw"); the backends check it
        return language
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    if language not in TO_LANGUAGE_CODE:
        raise ValueError(f"unknown language {language!r}; use a code such as zh or en")
    return TO_LANGUAGE_CODE[language]


DEFAULT_OPTIONS = DecodeOptions()


@dataclass(frozen=True)
class Word:
    """One word with its timing (ct2 ``word_timestamps`` only)."""

    start: float
    end: float
    word: str
    probability: float = 1.0


@dataclass(frozen=True)
class Segment:
    """A stretch of speech with its text; times in seconds from the audio's start."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "text": self.text,
        }
        if self.words:
            out["words"] = [
                {
                    "start": round(w.start, 2),
                    "end": round(w.end, 2),
                    "word": w.word,
                    "probability": round(w.probability, 4),
                }
                for w in self.words
            ]
        return out


@dataclass(frozen=True)
class Transcript:
    """The result of transcribing one audio.

    Attributes:
        text: the whole transcript.
        language: the language decoded (given or detected).
        duration: length of the audio in seconds.
        segments: timed segments, in order.
    """

    text: str
    language: str | None
    duration: float
    segments: tuple[Segment, ...] = ()

    @classmethod
    def from_segments(
        cls, segments: list[Segment] | tuple[Segment, ...], language: str | None, duration: float
    ) -> Transcript:
        """Build a transcript whose text joins the segment texts.

        Segment texts are joined without a separator when either side is CJK (Chinese
        is written without spaces) and with one space otherwise.
        """
        parts = [s.text for s in segments if s.text]
        text = ""
        for part in parts:
            if text and not (_is_cjk(text[-1]) or _is_cjk(part[0])):
                text += " "
            text += part
        return cls(text=text, language=language, duration=duration, segments=tuple(segments))

    def normalized(
        self, remove_punctuation: bool = False, to_simplified: bool = False
    ) -> Transcript:
        """The same transcript with punctuation removed and/or converted to simplified.

        Args:
            remove_punctuation: drop punctuation and symbols from every text. This
                applies the scoring normalization
                (:func:`whisper_finetune.text.normalize_text`), which also lowercases
                and removes spaces next to Chinese characters.
            to_simplified: convert traditional Chinese to simplified (OpenCC ``t2s``).

        Returns:
            A new transcript (this one when both switches are off).
        """
        if not (remove_punctuation or to_simplified):
            return self
        from whisper_finetune.text import normalize_text

        def norm(text: str) -> str:
            if remove_punctuation:
                return normalize_text(text, remove_punctuation=True, to_simplified=to_simplified)
            # keep case, spacing and punctuation: only the script changes
            from whisper_finetune.text import to_simplified_chinese

            return to_simplified_chinese(text)

        segments = tuple(replace(s, text=norm(s.text)) for s in self.segments)
        if segments:
            return Transcript.from_segments(segments, self.language, self.duration)
        return replace(self, text=norm(self.text))

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the original ``infer.py``: language, duration, results, text."""
        return {
            "language": self.language,
            "duration": round(self.duration, 3),
            "results": [s.to_dict() for s in self.segments],
            "text": self.text,
        }


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x2E80 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0xFF00 <= code <= 0xFFEF
        or 0x20000 <= code <= 0x3134F
    )


def _timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS,mmm`` (srt) or ``HH:MM:SS.mmm`` (vtt); hours may exceed 99."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _timed_segments(transcript: Transcript) -> tuple[Segment, ...]:
    if transcript.segments:
        return transcript.segments
    if transcript.text:  # a transcript without timing: one cue for the whole audio
        return (Segment(0.0, transcript.duration, transcript.text),)
    return ()


def to_srt(transcript: Transcript) -> str:
    """The transcript as SubRip subtitles, one numbered cue per segment."""
    cues = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text}\n"
        for i, s in enumerate(_timed_segments(transcript), start=1)
    ]
    return "\n".join(cues)


def to_vtt(transcript: Transcript) -> str:
    """The transcript as WebVTT subtitles."""
    cues = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text}\n"
        for s in _timed_segments(transcript)
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def format_transcript(transcript: Transcript, output_format: str = "json") -> str:
    """Render a transcript as ``json``, ``txt``, ``srt`` or ``vtt``.

    Args:
        transcript: what to render.
        output_format: one of :data:`OUTPUT_FORMATS`.

    Returns:
        The text, ending with a newline. JSON keeps Chinese characters as they are
        (``ensure_ascii=False``).

    Raises:
        ValueError: for an unknown format.
    """
    if output_format == "json":
        return json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if output_format == "txt":
        return transcript.text + "\n"
    if output_format == "srt":
        return to_srt(transcript)
    if output_format == "vtt":
        return to_vtt(transcript)
    raise ValueError(f"unknown output format {output_format!r}; expected one of {OUTPUT_FORMATS}")
