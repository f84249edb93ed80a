"""Live transcription over a WebSocket at ``/v1/realtime``, in OpenAI's Realtime events.

Clients of OpenAI's Realtime transcription sessions (and of vLLM's ``/v1/realtime``) send
base64 PCM16 audio (24 kHz, or 16 kHz) in ``input_audio_buffer.append`` events; the server
answers with server VAD events, ``conversation.item.input_audio_transcription.delta`` and
``.completed`` per item, and ``error`` events in OpenAI's shape (docs/realtime.md lists
every event and setting).

The text (whisper_streaming's local agreement): a growing turn's audio is decoded again
every :data:`STEP_SECONDS` (or when the last decode ends); what two successive hypotheses
agree on is sent as a delta and never changes. At commit, the last hypothesis (or a final
decode, if it did not hear the whole turn) completes the committed text. Decodes go
through the server's :class:`~whisper_finetune.serving.queue.Batcher` (streams batch
together); silence costs only the VAD; a turn is committed at :data:`MAX_TURN_SECONDS`.

The API key rule is the HTTP routes' (:class:`.guard.Guard`): ``Authorization: Bearer
KEY``, or from a browser OpenAI's subprotocol ``openai-insecure-api-key.KEY``.
"""

# no "from __future__ import annotations": FastAPI resolves the endpoint's annotation

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE
from whisper_finetune.inference.transcript import Transcript
from whisper_finetune.serving.errors import ApiError
from whisper_finetune.serving.guard import Guard
from whisper_finetune.serving.live import (
    ClientError,
    Resampler,
    Turn,
    check_append,
    completed_text,
    error_event,
    key_scope,
    new_delta,
    new_id,
)
from whisper_finetune.serving.live_settings import LiveSettings
from whisper_finetune.serving.runner import ServerState, check_language

logger = logging.getLogger("whisper_finetune.serving")

PARTIAL = "conversation.item.input_audio_transcription.partial"  # ours: tentative text
FIRST_SECONDS = 1.0  # a turn's first partial decode: this much audio (with its lead-in)
FIRST_SHOWN_SECONDS = 0.8  # the same with ``partials`` (its text is shown at once)
STEP_SECONDS = 0.5  # new audio between two partial decodes
MAX_TURN_SECONDS = 28.0  # a turn is committed at this length (one Whisper window)
END_PAD = 4 * SAMPLE_RATE // 10  # audio after the VAD's end of speech kept in the item
HOLD_CHARS = 3  # characters at the end of an agreed prefix not committed before the turn ends
CONTEXT_SAMPLES = 10 * SAMPLE_RATE  # audio of the previous turn decoded with a turn, as context
MIN_COMMIT_SECONDS = 0.1  # OpenAI refuses to commit less than 100 ms
VAD_WINDOW = 512  # Silero's window at 16 kHz
MS = SAMPLE_RATE // 1000  # samples in a millisecond


class Session:
    """One connection's state: the audio, the VAD, the turns, the options."""

    def __init__(self, state: ServerState, send, executor: ThreadPoolExecutor, max_seconds=None):
        self.state, self.send, self.executor = state, send, executor
        self.max_seconds: float | None = max_seconds  # the uncommitted buffer's bound
        self.id = new_id("sess")
        defaults = state.defaults
        self.settings = LiveSettings(defaults.language, defaults.initial_prompt)
        self.resampler = Resampler(self.settings.rate)
        self.audio = np.zeros(0, np.float32)  # the session's audio since the last trim
        self.offset = 0  # samples dropped from the front of ``audio``
        self.vad_done = 0  # samples the VAD has seen
        self.speech_at: int | None = None  # where the current speech began
        self.silence_from: int | None = None  # where the silence after speech began
        self.buffer_start = 0  # the uncommitted buffer's start
        self.turn: Turn | None = None
        self.previous_item: str | None = None
        self.spoken: int | None = None  # where the last turn with speech began
        self.finals: list[tuple[Turn, int]] = []  # committed turns waiting for their text
        self.wake = asyncio.Event()
        self.cancel = threading.Event()
        self.items = 0

    async def emit(self, kind: str, **fields: Any) -> None:
        await self.send({"type": kind, "event_id": new_id("event"), **fields})

    def describe(self) -> dict:
        return self.settings.describe(self.id, self.state.model_name or "whisper-1")

    async def handle(self, event: dict) -> None:
        kind = event.get("type")
        if kind in ("session.update", "transcription_session.update"):
            self.update(event.get("session"))
            updated = (
                "session.updated" if kind == "session.update" else "transcription_session.updated"
            )
            await self.emit(updated, session=self.describe())
        elif kind == "input_audio_buffer.append":
            await self.append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            await self.commit_buffer()
        elif kind == "input_audio_buffer.clear":
            self.turn, self.speech_at, self.silence_from = None, None, None
            self.buffer_start = self.offset + self.audio.size
            await self.emit("input_audio_buffer.cleared")
        else:
            raise ClientError(
                f"unknown or unsupported event type {kind!r}", "unknown_event", "type"
            )

    def update(self, session: Any) -> None:
        def language(code: str | None) -> str | None:
            try:
                return check_language(self.state, code)
            except ApiError as exc:
                raise ClientError(exc.message, "invalid_language", "session.language") from exc

        rate = self.settings.rate
        self.settings = self.settings.updated(session, language)
        if self.settings.rate != rate:
            self.resampler = Resampler(self.settings.rate)

    async def append(self, data: Any) -> None:
        try:
            raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        except (binascii.Error, ValueError):
            raw = None
        if raw is None or len(raw) % 2:
            raise ClientError("'audio' must be base64 of 16-bit little-endian PCM (an even number "
                              "of bytes)", "invalid_value", "audio")  # fmt: skip
        check_append(
            self.end() - self.buffer_start, len(raw) // 2, self.settings.rate, self.max_seconds
        )
        samples = self.resampler(np.frombuffer(raw, dtype="<i2"))
        self.audio = np.concatenate([self.audio, samples])
        await self.run_vad()
        self.wake.set()

    # -- VAD and turns ----------------------------------------------------------------
    def end(self) -> int:
        return self.offset + self.audio.size

    async def run_vad(self) -> None:
        from faster_whisper.vad import get_vad_model

        end = self.end() - (self.end() - self.vad_done) % VAD_WINDOW
        if end <= self.vad_done:
            return
        # one window before, for Silero's context; its own probability is dropped
        lead = min(VAD_WINDOW, self.vad_done - self.offset)
        chunk = self.audio[self.vad_done - self.offset - lead : end - self.offset]
        probs = np.asarray(get_vad_model()(chunk)).reshape(-1)[lead // VAD_WINDOW :]
        threshold = self.settings.detection["threshold"]
        for i, p in enumerate(probs):
            at = self.vad_done + i * VAD_WINDOW
            if p >= threshold:
                self.silence_from = None
                if self.speech_at is None:
                    self.speech_at = at
                    await self.start_turn(at)
            elif self.speech_at is not None and p < max(threshold - 0.15, 0.01):
                self.silence_from = at if self.silence_from is None else self.silence_from
                silence = self.settings.detection["silence_duration_ms"] * SAMPLE_RATE // 1000
                if self.settings.vad is not None and at + VAD_WINDOW - self.silence_from >= silence:
                    await self.stop_turn(self.silence_from)
        self.vad_done = end
        if self.turn and self.end() - self.turn.start >= MAX_TURN_SECONDS * SAMPLE_RATE:
            await self.commit(self.end())

    async def start_turn(self, at: int) -> None:
        if self.turn is None:
            pad = self.settings.detection["prefix_padding_ms"] * SAMPLE_RATE // 1000
            start = max(at - pad, self.buffer_start)
            context = start if self.spoken is None else max(self.spoken, start - CONTEXT_SAMPLES)
            self.turn = Turn(new_id("item"), start, context=context)
            self.spoken = start
        if self.settings.vad is not None:
            await self.emit("input_audio_buffer.speech_started",
                            audio_start_ms=self.turn.start // MS, item_id=self.turn.item_id)  # fmt: skip

    async def stop_turn(self, at: int) -> None:
        self.speech_at = self.silence_from = None
        if self.turn is not None:
            await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=at // MS,
                            item_id=self.turn.item_id)  # fmt: skip
            # the item keeps the speech's fading end (the VAD's end is where it fell quiet)
            await self.commit(min(self.end(), at + END_PAD))

    async def commit_buffer(self) -> None:
        """The client's commit: the current turn, or the buffer's audio as one item."""
        if self.end() - self.buffer_start < MIN_COMMIT_SECONDS * SAMPLE_RATE:
            seconds = (self.end() - self.buffer_start) / SAMPLE_RATE * 1000
            raise ClientError("Error committing input audio buffer: buffer too small. Expected "
                              f"at least 100ms of audio, but buffer only has {seconds:.2f}ms "
                              "of audio.", "input_audio_buffer_commit_empty")  # fmt: skip
        if self.turn is None:  # no speech heard since the last commit: an empty item
            self.turn = Turn(new_id("item"), self.buffer_start, silent=True)
        self.speech_at = self.silence_from = None
        await self.commit(self.end())

    async def commit(self, at: int) -> None:
        turn, self.turn = self.turn, None
        self.buffer_start = at
        await self.emit("input_audio_buffer.committed", previous_item_id=self.previous_item,
                        item_id=turn.item_id)  # fmt: skip
        await self.emit("conversation.item.created", previous_item_id=self.previous_item,
                        item={"id": turn.item_id, "object": "realtime.item", "type": "message",
                              "status": "completed", "role": "user",
                              "content": [{"type": "input_audio", "transcript": None}]})  # fmt: skip
        self.previous_item = turn.item_id
        self.items += 1
        self.finals.append((turn, at))
        if self.speech_at is not None:  # speech goes on past MAX_TURN_SECONDS: a new turn
            await self.start_turn(at)
        self.wake.set()

    # -- decoding ---------------------------------------------------------------------
    def clip(self, start: int, end: int) -> np.ndarray:
        return self.audio[max(0, start - self.offset) : max(0, end - self.offset)]

    def trim(self) -> None:
        """Drop audio no turn needs any more (keeping the VAD's context); long silence
        keeps its last seconds only (a commit of it is an empty item either way)."""
        turns = [t for t, _ in self.finals] + ([self.turn] if self.turn else [])
        if not turns:
            self.buffer_start = max(self.buffer_start, self.end() - CONTEXT_SAMPLES)
        keep = min([self.buffer_start, self.vad_done - VAD_WINDOW, self.end() - CONTEXT_SAMPLES]
                   + [t.context for t in turns])  # fmt: skip
        if keep - self.offset > 10 * SAMPLE_RATE:
            self.audio = self.audio[keep - self.offset :]
            self.offset = keep

    async def decode(self, turn: Turn, end: int, context: bool = True) -> str:
        """The turn's text up to ``end``, decoded with the server's defaults (as the HTTP
        routes), after up to :data:`CONTEXT_SAMPLES` of the previous turn (as in the whole
        recording; segments mostly before the turn are dropped) unless ``context`` is
        False."""
        options = dataclasses.replace(self.state.defaults, language=self.settings.language,
                                      initial_prompt=self.settings.prompt, word_timestamps=False,
                                      vad_filter=False)  # fmt: skip
        start = turn.start
        if context and not options.without_timestamps:
            start = min(start, max(turn.context, end - int(MAX_TURN_SECONDS * SAMPLE_RATE)))
        samples, state, cancel = self.clip(start, end), self.state, self.cancel
        normalize = self.settings.normalize

        def work():
            if state.batchable(options):
                return state.batcher.run(options, (samples, normalize), cancel).transcript
            with state.queue.slot(cancel):
                return normalize.transcript(state.transcriber.transcribe(samples, options))

        transcript = await asyncio.get_running_loop().run_in_executor(self.executor, work)
        if start < turn.start:
            boundary = (turn.start - start) / SAMPLE_RATE
            kept = [s for s in transcript.segments if s.start + s.end >= 2 * boundary]
            if not kept and any(s.end > boundary for s in transcript.segments):
                # one segment ran from the previous turn into this one and went with it:
                # the turn (often a short one after a pause) is decoded on its own
                return await self.decode(turn, end, context=False)
            transcript = Transcript.from_segments(kept, transcript.language, transcript.duration)
        return transcript.text.strip()

    async def decoder(self) -> None:
        """Finish committed turns in order; between them, partial decodes of the live turn."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.finals:
                await self.finish(*self.finals[0])
                self.finals.pop(0)
            self.trim()
            turn = self.turn
            due = None if turn is None else self.due(turn)
            if due is None:
                continue
            end, rough = due
            turn.decoded_at = end - turn.start
            try:
                text = await self.decode(turn, end, context=not rough)
            except Exception as exc:  # a partial is tried again at the next step
                logger.warning("realtime: a partial decode failed: %s", exc)
                continue
            # the last characters heard are still open: held back until audio follows them
            added = new_delta(turn.committed, turn.last or "", text, HOLD_CHARS)
            if added:
                await self.delta(turn, added)
            turn.last, turn.rough = text, rough
            if self.settings.partials:
                await self.partial(turn, text)
            self.wake.set()  # more audio may have come while decoding

    def due(self, turn: Turn) -> tuple[int, bool] | None:
        """The live turn's next partial decode: where it ends, and whether it leaves out
        the previous turn's audio (``rough``); None while none is due.

        While the person speaks: all the audio, :data:`FIRST_SECONDS` into the turn
        (:data:`FIRST_SHOWN_SECONDS` with ``partials``: rough, a fifth faster, shown, never
        final alone), then every :data:`STEP_SECONDS` of new audio. In silence: one decode
        up to where the turn will be committed if it stays quiet (the silence's start plus
        :data:`END_PAD`), which is also the item's final text (no decode at the commit).
        """
        if self.silence_from is not None and self.settings.vad is not None:
            end = self.silence_from + END_PAD
            if self.end() >= end and turn.decoded_at < end - turn.start:
                return end, False
            return None
        first = FIRST_SHOWN_SECONDS if self.settings.partials else FIRST_SECONDS
        if (
            self.end() - turn.start - turn.decoded_at
            < (first if turn.last is None else STEP_SECONDS) * SAMPLE_RATE
        ):
            return None
        rough = self.settings.partials and turn.last is None and turn.context < turn.start
        return self.end(), rough

    async def finish(self, turn: Turn, at: int) -> None:
        """A committed turn's last deltas and its ``completed`` event (or ``failed``)."""
        if turn.silent:
            text = ""
        elif turn.last is not None and not turn.rough and turn.decoded_at >= at - turn.start:
            text = turn.last  # the last partial decode heard the whole turn
        else:
            try:
                text = await self.decode(turn, at)
            except Exception as exc:  # this item fails; the session goes on
                logger.warning("realtime: item %s failed: %s", turn.item_id, exc)
                await self.emit("conversation.item.input_audio_transcription.failed",
                                item_id=turn.item_id, content_index=0,
                                error={"type": "server_error", "code": "transcription_failed",
                                       "message": f"{type(exc).__name__}: {exc}", "param": None})  # fmt: skip
                return
        full = completed_text(turn.committed, text)
        if len(full) > len(turn.committed):
            await self.delta(turn, full[len(turn.committed) :])
        seconds = round((at - turn.start) / SAMPLE_RATE, 3)
        await self.emit("conversation.item.input_audio_transcription.completed",
                        item_id=turn.item_id, content_index=0, transcript=full,
                        usage={"type": "duration", "seconds": seconds})  # fmt: skip

    async def partial(self, turn: Turn, text: str) -> None:
        """Ours (``partials``): the whole hypothesis so far, and its part after the
        committed deltas, which the next partial event replaces."""
        full = completed_text(turn.committed, text)
        if full[len(turn.committed) :] != turn.tentative:
            turn.tentative = full[len(turn.committed) :]
            await self.emit(PARTIAL, item_id=turn.item_id, content_index=0, transcript=full,
                            tentative=turn.tentative)  # fmt: skip

    async def delta(self, turn: Turn, text: str) -> None:
        turn.committed += text
        await self.emit("conversation.item.input_audio_transcription.delta",
                        item_id=turn.item_id, content_index=0, delta=text)  # fmt: skip


def register(app, state: ServerState, api_key: str | None = None, max_audio_seconds=None) -> None:
    """Add the ``/v1/realtime`` WebSocket to ``app`` (``max_audio_seconds``: check_append)."""
    from fastapi import WebSocket, WebSocketDisconnect

    gate = Guard(None, api_key=api_key, max_upload_bytes=0, queue=None)
    executor = ThreadPoolExecutor(64, thread_name_prefix="realtime")

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket):
        scope, protocol = key_scope(websocket.scope)
        refusal = gate._refuse(scope, "/v1/realtime")
        await websocket.accept(subprotocol=protocol)
        if refusal:
            status, message, code, _ = refusal
            await websocket.send_json(error_event(code, message))
            await websocket.close(code=1008, reason=message[:120])
            return
        lock = asyncio.Lock()

        async def send(payload: dict) -> None:
            async with lock:
                await websocket.send_text(json.dumps(payload, ensure_ascii=False))

        session = Session(state, send, executor, max_audio_seconds)
        started = time.monotonic()
        await session.emit("session.created", session=session.describe())
        decoder = asyncio.create_task(session.decoder())
        try:
            while True:
                message = await websocket.receive_text()
                event_id = None
                try:
                    event = json.loads(message)
                    if not isinstance(event, dict):
                        raise ClientError("an event must be a JSON object", "invalid_json")
                    event_id = event.get("event_id")
                    await session.handle(event)
                except json.JSONDecodeError as exc:
                    await _error(session, ClientError(f"invalid JSON: {exc}", "invalid_json"), None)
                except ClientError as exc:
                    await _error(session, exc, event_id)
                if decoder.done():  # a bug in the decoder: say so instead of going quiet
                    decoder.result()
        except WebSocketDisconnect:
            pass
        finally:
            session.cancel.set()
            decoder.cancel()
            logger.info("WS /v1/realtime items=%d audio=%.2fs time=%.3fs", session.items,
                        session.end() / SAMPLE_RATE, time.monotonic() - started)  # fmt: skip


async def _error(session: Session, exc: ClientError, event_id: Any) -> None:
    await session.send(error_event(exc.code, str(exc), exc.param, event_id))
