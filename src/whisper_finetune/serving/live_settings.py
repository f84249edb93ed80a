"""A live session's settings: what ``session.update`` sets and ``session.created`` shows.

OpenAI's Realtime API has two shapes for the same settings, the beta one
(``input_audio_format``, ``input_audio_transcription``, ``turn_detection``) and the GA one
(``audio.input.format``, ``audio.input.transcription``, ``audio.input.turn_detection``);
:meth:`LiveSettings.updated` reads both, :meth:`LiveSettings.describe` writes both. Ours,
beside OpenAI's under ``transcription``: ``to_simple`` and ``remove_pun`` (as on the HTTP
routes) and ``partials`` (tentative text events, see :mod:`.realtime`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from whisper_finetune.serving.decode import Normalize
from whisper_finetune.serving.live import ClientError

RATES = (24000, 16000)  # PCM16 sample rates a client may send (OpenAI's is 24 kHz)
DEFAULT_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
               "silence_duration_ms": 500}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class LiveSettings:
    """One session's settings (a new object at each update)."""

    language: str | None = None
    prompt: str | None = None
    rate: int = RATES[0]
    normalize: Normalize = dataclasses.field(default_factory=Normalize)
    vad: dict | None = dataclasses.field(default_factory=lambda: dict(DEFAULT_VAD))
    partials: bool = False  # ours: tentative text events between the committed deltas

    @property
    def detection(self) -> dict:
        """The VAD's parameters: the session's ``turn_detection``, or the defaults where it
        is null (the client commits; the VAD still finds where speech starts)."""
        return self.vad or DEFAULT_VAD

    def describe(self, session_id: str, model: str) -> dict:
        """The session object of ``session.created`` / ``session.updated``, both shapes."""
        transcription = {"model": model, "language": self.language, "prompt": self.prompt or "",
                         "to_simple": self.normalize.to_simple,
                         "remove_pun": self.normalize.remove_pun,
                         "partials": self.partials}  # fmt: skip
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "type": "transcription",
            "input_audio_format": "pcm16",
            "input_audio_transcription": transcription,
            "turn_detection": self.vad,
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": self.rate},
                                "transcription": transcription, "turn_detection": self.vad}},
        }  # fmt: skip

    def updated(self, session: Any, check_language: Callable[[str | None], str | None]):
        """These settings changed by a ``session.update``'s ``session`` object.

        ``check_language`` returns a valid language code (or None) and raises
        :class:`ClientError` for an unknown one.

        Raises:
            ClientError: naming the field, for a value the server cannot take.
        """
        if not isinstance(session, dict):
            raise ClientError("session.update needs a 'session' object", "invalid_value", "session")
        changes: dict[str, Any] = {}
        audio_in = (session.get("audio") or {}).get("input") or {}
        transcription = session.get("input_audio_transcription") or audio_in.get("transcription")
        if isinstance(transcription, dict):
            if "language" in transcription:
                changes["language"] = check_language(transcription["language"] or None)
            if "prompt" in transcription:
                changes["prompt"] = transcription["prompt"] or None
            changes["normalize"] = Normalize(
                bool(transcription.get("to_simple", self.normalize.to_simple)),
                bool(transcription.get("remove_pun", self.normalize.remove_pun)),
            )
            partials = transcription.get("partials", self.partials)
            if not isinstance(partials, bool):
                raise ClientError(f"partials must be true or false, got {partials!r}",
                                  "invalid_value", "session.input_audio_transcription.partials")  # fmt: skip
            changes["partials"] = partials
        fmt = session.get("input_audio_format", audio_in.get("format"))
        if fmt is not None:
            rate = fmt.get("rate", RATES[0]) if isinstance(fmt, dict) else RATES[0]
            kind = fmt.get("type") if isinstance(fmt, dict) else fmt
            if kind not in ("pcm16", "audio/pcm") or rate not in RATES:
                raise ClientError(f"unsupported input audio format {fmt!r}: use pcm16 (audio/pcm) "
                                  f"at 24000 or 16000 Hz", "invalid_value", "session.input_audio_format")  # fmt: skip
            changes["rate"] = rate
        for source in (session, audio_in):
            if "turn_detection" in source:
                vad = source["turn_detection"]
                if vad is not None and (
                    not isinstance(vad, dict) or vad.get("type", "server_vad") != "server_vad"
                ):
                    raise ClientError("turn_detection must be null or {'type': 'server_vad', ...}",
                                      "invalid_value", "session.turn_detection")  # fmt: skip
                changes["vad"] = None if vad is None else {**DEFAULT_VAD, **vad}
        return dataclasses.replace(self, **changes)
