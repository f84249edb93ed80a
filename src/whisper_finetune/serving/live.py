"""The pieces of live transcription that need no connection (see :mod:`.realtime`).

- the local agreement policy (whisper_streaming's): :func:`agreed_prefix` of two
  successive hypotheses is committed; :func:`completed_text` appends a final hypothesis
  to text already committed without changing it;
- :class:`Resampler`: PCM16 chunks at 24 kHz (or 16 kHz) to 16 kHz float32, with state
  across chunks;
- :class:`Turn`, one item's state, and :class:`ClientError`, an event the server refuses
  (:func:`error_event` its ``error`` event in OpenAI's shape);
- :func:`check_append`: the uncommitted buffer's bound, the server's ``--max_audio_seconds``;
- :func:`key_scope`: a browser's API key (OpenAI's subprotocol) as a header.
"""

from __future__ import annotations

import dataclasses
import difflib
import uuid

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class ClientError(Exception):
    """An event the server refuses; sent back as an ``error`` event."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param


def error_event(
    code: str, message: str, param: str | None = None, event_id=None, kind="invalid_request_error"
) -> dict:
    """An ``error`` event in OpenAI's Realtime shape (``event_id``: the client's event's)."""
    error = {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}
    return {"type": "error", "event_id": new_id("event"), "error": error}


def check_append(buffered: int, pcm_samples: int, rate: int, max_seconds: float | None) -> None:
    """Refuse an append that would take the uncommitted buffer past ``max_seconds``.

    The HTTP routes refuse audio longer than the server's ``--max_audio_seconds`` (413);
    a live session's uncommitted buffer (``buffered`` samples at 16 kHz, and the append's
    ``pcm_samples`` at ``rate``) is bounded by the same limit. The append is dropped
    whole, before it is resampled: what was buffered stays, the session stays open.

    Raises:
        ClientError: ``audio_too_long``, naming the limit and what to do.
    """
    after = buffered + pcm_samples * SAMPLE_RATE / rate
    if max_seconds is not None and after > max_seconds * SAMPLE_RATE:
        raise ClientError(
            f"input_audio_buffer.append: the uncommitted audio buffer would hold "
            f"{after / SAMPLE_RATE:.1f} s, past the server's limit of {max_seconds:g} s "
            "(--max_audio_seconds); this append was dropped and the buffer keeps the "
            f"{buffered / SAMPLE_RATE:.1f} s it had. Commit the buffer "
            "(input_audio_buffer.commit) or clear it before appending more",
            "audio_too_long",
        )


def _folded(text: str) -> str:
    """``text`` in simplified characters where OpenCC keeps its length (positions then
    line up with ``text``'s), else ``text``: whisper-base flips between the two scripts
    from one decode of a growing turn to the next (科學家 / 科学家)."""
    from whisper_finetune.text import to_simplified_chinese

    folded = to_simplified_chinese(text)
    return folded if len(folded) == len(text) else text


def agreed_prefix(a: str, b: str) -> str:
    """The longest common prefix of two hypotheses, read across scripts (``b``'s text)."""
    n = 0
    for x, y in zip(_folded(a), _folded(b), strict=False):
        if x != y:
            break
        n += 1
    return b[:n]


def new_delta(committed: str, previous: str, current: str, hold: int) -> str:
    """What a partial hypothesis adds to the text already sent (local agreement).

    The prefix ``previous`` and ``current`` agree on (across scripts), less its last
    ``hold`` characters (still open), past ``committed``; empty where that agreement
    does not extend the committed text.
    """
    agreed = agreed_prefix(previous, current)
    agreed = agreed[: max(len(agreed) - hold, 0)]
    if len(agreed) <= len(committed) or _folded(agreed[: len(committed)]) != _folded(committed):
        return ""
    return agreed[len(committed) :]


def completed_text(committed: str, final: str) -> str:
    """``committed`` (already sent, never changed) followed by what ``final`` says after it.

    Where the final hypothesis differs inside the committed part (other characters, or
    the other script), the place where the committed text ends is found by aligning the
    two (difflib, across scripts), and ``final``'s rest from there is appended.
    """
    if not committed:
        return final
    folded_committed, folded_final = _folded(committed), _folded(final)
    if folded_final.startswith(folded_committed):
        return committed + final[len(committed) :]
    matcher = difflib.SequenceMatcher(None, folded_committed, folded_final)
    end = 0
    for block in matcher.get_matching_blocks():
        if block.size:
            end = block.b + block.size + (len(committed) - block.a - block.size)
    return committed + final[min(max(end, 0), len(final)) :]


class Resampler:
    """PCM16 at ``rate`` to float32 at 16 kHz, across chunks (FFmpeg's resampler)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler = None

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        samples = pcm.astype(np.float32) / 32768.0
        if self.rate == SAMPLE_RATE or samples.size == 0:
            return samples
        import av

        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate = self.rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


@dataclasses.dataclass
class Turn:
    """One item: audio from ``start`` (samples since the session began) to now."""

    item_id: str
    start: int
    committed: str = ""  # text sent as deltas
    last: str | None = None  # the previous partial hypothesis
    tentative: str = ""  # what the last partial event showed after the committed text
    rough: bool = False  # ``last`` was decoded without the previous turn's audio
    decoded_at: int = 0  # the turn's length in samples at its last partial decode
    silent: bool = False  # committed without speech: an empty transcript, nothing decoded
    context: int = -1  # where its decodes start: before ``start``, the previous turn's audio

    def __post_init__(self) -> None:
        if self.context < 0 or self.context > self.start:
            self.context = self.start


KEY_PROTOCOL = "openai-insecure-api-key."  # how a browser sends its key (as OpenAI)


def key_scope(scope: dict) -> tuple[dict, str | None]:
    """The scope with a browser's key subprotocol as an Authorization header."""
    offered = list(scope.get("subprotocols", []) or [])
    headers = list(scope.get("headers", []))
    for protocol in offered:
        if protocol.startswith(KEY_PROTOCOL):
            headers.append((b"authorization", f"Bearer {protocol[len(KEY_PROTOCOL) :]}".encode()))
    # a browser drops a connection that picks none of the subprotocols it offered
    plain = [p for p in offered if not p.startswith(KEY_PROTOCOL)]
    chosen = (plain or offered or [None])[0]
    return {**scope, "headers": headers}, chosen
