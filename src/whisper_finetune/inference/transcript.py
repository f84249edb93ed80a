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
# word_srt / word_vtt: one cue per word (needs word timestamps: --word_timestamps on ct2)
OUTPUT_FORMATS = ("json", "txt", "srt", "vtt", "word_srt", "word_vtt")


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode; shared by every backend. Vary it with :func:`dataclasses.replace`.

    The defaults are Whisper's robust decoding (greedy first, temperature fallback from 0
    to 1.0 in steps of 0.2 for a window whose compression ratio exceeds 2.4 or whose
    average log-probability is below -1.0, and no text for a window whose no-speech
    probability exceeds 0.6 while its log-probability is low), with segment timestamps
    and no conditioning on the previous window's text: silence, noise and music give no
    text instead of invented loops. ``robust=False`` (:meth:`plain`) is one greedy or
    beam pass, for benchmarks that compare decoders like for like.
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
    # the first temperature; 0 is deterministic, > 0 samples
    temperature: float = field(
        default=0.0,
        metadata={"help": "(first) sampling temperature; 0 = greedy/beam search"},
    )
    # Whisper's robust decoding: temperature fallback and the three thresholds below
    robust: bool = field(
        default=True,
        metadata={
            "help": "Whisper's robust decoding: a window whose text repeats (compression "
            "ratio) or is unlikely (log-prob) is decoded again at a higher temperature, and "
            "a window judged silent (no-speech) gives no text; false = one plain "
            "greedy/beam pass (for benchmarks like for like with plain decoders)"
        },
    )
    # sampling (temperature > 0, fallback) is seeded per call: the same audio, the same text
    seed: int | None = field(
        default=0,
        metadata={
            "help": "seed of sampling (fallback temperatures); none = a fresh draw each call"
        },
    )
    # the Silero VAD (shipped with faster-whisper) in front of both backends
    vad_gate: bool = field(
        default=True,
        metadata={
            "help": "robust: give no text for audio in which the Silero VAD finds no speech, "
            "and drop segments that lie outside the speech it finds (both backends)"
        },
    )
    # temperatures tried after a failed window: temperature + k * step, up to 1.0
    temperature_increment_on_fallback: float | None = field(
        default=0.2,
        metadata={
            "help": "robust: temperature step of the fallback (0 to 1.0); none = no fallback"
        },
    )
    compression_ratio_threshold: float | None = field(
        default=2.4,
        metadata={
            "help": "robust: gzip compression ratio above which a window is a repetition loop"
        },
    )
    logprob_threshold: float | None = field(
        default=-1.0,
        metadata={"help": "robust: average log-probability below which a window is decoded again"},
    )
    no_speech_threshold: float | None = field(
        default=0.6,
        metadata={
            "help": "robust: no-speech probability above which an unlikely window is silence"
        },
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
        step = self.temperature_increment_on_fallback
        if step is not None and not (math.isfinite(step) and step >= 0):
            raise ValueError(f"temperature_increment_on_fallback must be >= 0, got {step}")
        if self.language is not None:
            object.__setattr__(self, "language", language_code(self.language))

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The temperatures tried in turn: one without robust decoding or a fallback step."""
        step = self.temperature_increment_on_fallback
        if not self.robust or not step or self.temperature >= 1.0:
            return (self.temperature,)
        count = int(round((1.0 - self.temperature) / step)) + 1
        return tuple(round(min(self.temperature + i * step, 1.0), 6) for i in range(count))

    @property
    def thresholds(self) -> dict[str, float | None]:
        """The three thresholds, all None without robust decoding."""
        names = ("compression_ratio_threshold", "logprob_threshold", "no_speech_threshold")
        return {n: getattr(self, n) if self.robust else None for n in names}

    @classmethod
    def plain(cls, **kwargs: Any) -> DecodeOptions:
        """One greedy (or beam) pass without fallback or thresholds: benchmark decoding."""
        return cls(robust=False, **kwargs)


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


def _word_cues(transcript: Transcript) -> tuple[Segment, ...]:
    """One cue per word; a segment without word timings stays one cue.

    Raises:
        ValueError: when no segment has word timings (decode with ``word_timestamps``).
    """
    segments = _timed_segments(transcript)
    if segments and not any(s.words for s in segments):
        raise ValueError(
            "word-level subtitles need word timestamps: decode with --word_timestamps (ct2 backend)"
        )
    cues: list[Segment] = []
    for s in segments:
        if not s.words:
            cues.append(s)
        cues.extend(Segment(w.start, w.end, w.word.strip()) for w in s.words if w.word.strip())
    return tuple(cues)


def to_srt(transcript: Transcript, word_level: bool = False) -> str:
    """The transcript as SubRip subtitles, one numbered cue per segment (or per word)."""
    cues = [
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text}\n"
        for i, s in enumerate(
            _word_cues(transcript) if word_level else _timed_segments(transcript), start=1
        )
    ]
    return "\n".join(cues)


def to_vtt(transcript: Transcript, word_level: bool = False) -> str:
    """The transcript as WebVTT subtitles, one cue per segment (or per word)."""
    cues = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text}\n"
        for s in (_word_cues(transcript) if word_level else _timed_segments(transcript))
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def format_transcript(transcript: Transcript, output_format: str = "json") -> str:
    """Render a transcript as ``json``, ``txt``, ``srt`` or ``vtt``.

    Args:
        transcript: what to render.
        output_format: one of :data:`OUTPUT_FORMATS` (``word_srt``/``word_vtt``: one cue
            per word, from word timestamps).

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
    if output_format == "word_srt":
        return to_srt(transcript, word_level=True)
    if output_format == "word_vtt":
        return to_vtt(transcript, word_level=True)
    raise ValueError(f"unknown output format {output_format!r}; expected one of {OUTPUT_FORMATS}")
