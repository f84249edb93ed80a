"""The async side of a request: checks before any work, the queue, streaming, disconnects.

Every endpoint validates its fields first (HTTP 422, nothing decoded), then checks the
upload (400 missing or empty, 413 too large), then asks the :class:`WorkQueue` for a slot
(429 with ``Retry-After`` when full) and waits for the job's events without blocking
the event loop. While it waits it watches the connection: a client that goes away gets
its job cancelled and its slot back.

On the CTranslate2 backend, requests of at most 30 s whose options allow it (a language
given, no word timestamps, no VAD filter) are batched across requests (:class:`Batcher`):
concurrent requests with the same options are decoded as one batch with the
transcriber's ``transcribe_batch``; a request that finds no company is decoded as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from whisper_finetune.data.audio import SAMPLE_RATE
from whisper_finetune.inference.base import CHUNK_SAMPLES
from whisper_finetune.inference.transcript import TASKS, DecodeOptions, language_code
from whisper_finetune.serving.decode import (
    AudioUnreadable,
    Job,
    Normalize,
    Result,
    read_samples,
    run,
    safe_name,
)
from whisper_finetune.serving.errors import ApiError
from whisper_finetune.serving.queue import Batcher, Cancelled, QueueFull, WorkQueue

POLL_SECONDS = 0.25  # how often a waiting request checks that its client is still there
MAX_BATCH = 16  # the most requests decoded in one batch
MAX_BATCH_ENV = "WHISPER_FINETUNE_MAX_BATCH"  # overrides MAX_BATCH; 1 turns batching off


@dataclass
class ServerState:
    """What every endpoint needs: the model, request defaults and limits."""

    transcriber: Any
    defaults: DecodeOptions
    queue: WorkQueue
    model_name: str = ""
    backend: str = ""
    max_upload_bytes: int = 100 * 1024 * 1024
    languages: dict[str, str] = dataclasses.field(default_factory=dict)
    # decodes concurrent requests together; None where the backend cannot batch
    batcher: Batcher | None = None

    def __post_init__(self) -> None:
        if self.batcher is None and getattr(self.transcriber, "backend", "") == "ct2":
            self.batcher = Batcher(self.queue, batch_decoder(self.transcriber), max_batch())

    def batchable(self, options: DecodeOptions) -> bool:
        """Whether requests with these options may be batched with others."""
        return (
            self.batcher is not None
            and options.language is not None
            and not options.word_timestamps
            and not options.vad_filter
        )


def max_batch() -> int:
    """:data:`MAX_BATCH`, or the :data:`MAX_BATCH_ENV` environment variable's value."""
    value = os.environ.get(MAX_BATCH_ENV, "").strip()
    if not value:
        return MAX_BATCH
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{MAX_BATCH_ENV} must be a whole number >= 1, got {value!r}")
    return int(value)


def batch_decoder(transcriber):
    """``(options, [(samples, normalize), ...]) -> [Result, ...]``: one batch, one call."""

    def decode(options: DecodeOptions, payloads: list) -> list[Result]:
        clips = [samples for samples, _ in payloads]
        transcripts = transcriber.transcribe_batch(clips, options, batch_size=len(clips))
        results = []
        for transcript, (_, normalize) in zip(transcripts, payloads, strict=True):
            transcript = normalize.transcript(transcript)
            # as on the backends that decode in one call: no per-segment decoder details
            details = [
                {"id": i, "seek": int(round(s.start * 100)), "tokens": [], "temperature": 0.0,
                 "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0}
                for i, s in enumerate(transcript.segments)
            ]  # fmt: skip
            results.append(Result(transcript, details))
        return results

    return decode


def run_batched(state: ServerState, job: Job, cancel, emit) -> tuple[bool, Result]:
    """Decode one request's audio in a batch with concurrent ones where it is short enough.

    Returns:
        whether the result came from a batch (its segments not yet handed on), and it.
    """

    def quiet(kind: str, value: Any) -> None:  # run() announces the audio once more
        if kind != "audio":
            emit(kind, value)

    def alone() -> tuple[bool, Result]:
        return False, run(state.transcriber, job, cancel, quiet)

    with state.batcher.arriving() as token:
        samples = read_samples(job)
        emit("audio", samples.size / SAMPLE_RATE)
        if cancel.is_set():
            raise Cancelled("client disconnected")
        if samples.size <= CHUNK_SAMPLES:
            found = state.batcher.run(
                job.options, (samples, job.normalize), cancel, alone=alone, token=token
            )
            return found if isinstance(found, tuple) else (True, found)
    with state.queue.slot(cancel):  # longer than one window: on its own, as before
        return alone()


def whisper_languages() -> dict[str, str]:
    """Whisper's language codes and names (``{"zh": "chinese", ...}``)."""
    try:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES
    except ImportError:  # pragma: no cover - transformers is a dependency
        return {}
    return dict(LANGUAGES)


def check_language(state: ServerState, language: str | None, param: str = "language") -> str | None:
    """A language code Whisper knows, None for none given; 422 otherwise."""
    if language is None or not language.strip():
        return None
    try:
        code = language_code(language)
    except ValueError as exc:
        raise ApiError(422, str(exc), param=param, code="invalid_language") from exc
    if state.languages and code not in state.languages:
        raise ApiError(
            422,
            f"unknown language {language!r}; use an ISO 639-1 code Whisper knows, such as zh or en",
            param=param,
            code="invalid_language",
        )
    return code


def check_task(task: str | None) -> str | None:
    if task is None or task == "":
        return None
    if task not in TASKS:
        raise ApiError(
            422,
            f"task must be one of {list(TASKS)}, got {task!r}",
            param="task",
            code="invalid_value",
        )
    return task


def options_for(
    state: ServerState, param_names: dict[str, str] | None = None, **changes
) -> DecodeOptions:
    """The server's defaults with this request's changes; 422 on a value they refuse."""
    changes = {k: v for k, v in changes.items() if v is not None}
    try:
        return dataclasses.replace(state.defaults, **changes)
    except ValueError as exc:
        message = str(exc)
        param = next((p for k, p in (param_names or {}).items() if message.startswith(k)), None)
        raise ApiError(422, message, param=param, code="invalid_value") from exc


def check_upload(state: ServerState, upload, param: str) -> str:
    """400 when the file is missing or empty, 413 when larger than the limit; its name."""
    if upload is None or not hasattr(upload, "file"):
        raise ApiError(
            400,
            f"the request needs an audio file in the {param!r} field",
            param=param,
            code="missing_file",
        )
    name = safe_name(upload.filename)
    size = upload.size
    if size is None:
        upload.file.seek(0, 2)
        size = upload.file.tell()
    if size > state.max_upload_bytes:
        raise ApiError(
            413,
            f"{name}: {size} bytes is more than the limit of {state.max_upload_bytes} bytes",
            param=param,
            code="file_too_large",
        )
    if size == 0:
        raise ApiError(400, f"{name}: the file is empty (0 bytes)", param=param, code="empty_file")
    return name


class Running:
    """One admitted job and the queue of its events (``audio``, ``segment``, ``done``, ``error``)."""

    def __init__(self, state: ServerState, request, job: Job, audio_status: int = 415) -> None:
        self.request = request
        self.audio_status = audio_status
        self.events: asyncio.Queue = asyncio.Queue()
        self.finished = False  # the job's last event ("done" or "error") has arrived
        loop = asyncio.get_running_loop()

        def emit(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))

        batched = state.batchable(job.options)

        def work(cancel):
            try:
                if not batched:
                    emit("done", run(state.transcriber, job, cancel, emit))
                    return
                from_batch, result = run_batched(state, job, cancel, emit)
                if from_batch:
                    for segment, detail in zip(
                        result.transcript.segments, result.details, strict=True
                    ):
                        emit("segment", (segment, detail))
                emit("done", result)
            except BaseException as exc:  # handed to the event loop, raised there
                emit("error", exc)
                if isinstance(exc, Cancelled):
                    raise  # the queue counts the job as cut short

        try:
            self.future, self.cancel = state.queue.submit(work, batched=batched)
        except QueueFull as exc:
            raise ApiError(
                429,
                f"{exc}; retry in about {exc.retry_after} s",
                code="queue_full",
                headers={"Retry-After": str(exc.retry_after)},
            ) from exc

    def stop(self) -> None:
        """Ask the job to stop and free its slot (safe to call twice, or after the end)."""
        if not self.finished:
            self.request.state.cancelled = True  # logged: the client left mid-job
        self.cancel.set()
        self.future.cancel()

    async def next(self) -> tuple[str, Any]:
        """The next event; raises ApiError for a failure, 499 if the client went away."""
        while True:
            try:
                kind, value = await asyncio.wait_for(self.events.get(), POLL_SECONDS)
            except asyncio.TimeoutError:
                if await self.request.is_disconnected():
                    self.stop()
                    raise ApiError(499, "client closed the request", code="client_closed") from None
                continue
            if kind in ("done", "error"):
                self.finished = True
            if kind == "audio":
                self.request.state.audio_seconds = value
            if kind == "error":
                raise self._api_error(value)
            return kind, value

    def _api_error(self, exc: BaseException) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, AudioUnreadable):
            return ApiError(self.audio_status, str(exc), param=None, code="invalid_audio")
        if isinstance(exc, Cancelled):
            return ApiError(499, "client closed the request", code="client_closed")
        if isinstance(exc, ValueError):  # a decoding option the backend refuses
            return ApiError(422, str(exc), code="invalid_value")
        return ApiError(
            500, f"transcription failed: {type(exc).__name__}: {exc}", code="server_error"
        )

    async def result(self) -> Result:
        """Wait for the whole transcription."""
        try:
            while True:
                kind, value = await self.next()
                if kind == "done":
                    return value
        except BaseException:
            self.stop()
            raise

    async def started(self) -> float:
        """Wait until the audio is decoded (so that 415 can still be answered); its seconds."""
        try:
            while True:
                kind, value = await self.next()
                if kind == "audio":
                    return value
        except BaseException:
            self.stop()
            raise

    async def segments(self) -> AsyncIterator[tuple[str, Any]]:
        """``("segment", (segment, detail))`` events, then ``("done", result)``."""
        try:
            while True:
                kind, value = await self.next()
                yield kind, value
                if kind == "done":
                    return
        finally:  # the response ended early or the client went away
            self.stop()


def make_job(upload, name: str, options: DecodeOptions, to_simple: bool, remove_pun: bool) -> Job:
    return Job(upload.file, name, options, Normalize(bool(to_simple), bool(remove_pun)))
