"""OpenAI's audio API: ``/v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/models``.

The multipart fields are OpenAI's (``file``, ``model``, ``language``, ``prompt``,
``response_format`` = ``json|text|srt|vtt|verbose_json``, ``temperature``,
``timestamp_granularities[]`` = ``segment|word``, ``stream``), so the official ``openai``
client works unchanged with ``base_url=http://HOST:PORT/v1``. Two fields are this
server's own (send them with the client's ``extra_body``): ``to_simple`` (traditional
to simplified Chinese) and ``remove_pun`` (drop punctuation).

``model`` is accepted whatever it names (clients send ``whisper-1``) and never read as a
path: the server answers with the one model it loaded.

With ``stream=true`` the answer is server-sent events in OpenAI's shape: one
``transcript.text.delta`` per decoded segment (with this server's extra ``segment``
object carrying its ``start`` and ``end``), then ``transcript.text.done``.
"""

# no "from __future__ import annotations": FastAPI resolves the endpoints' annotations
# at runtime, and they name classes imported inside register()

import dataclasses
import json
import math

from whisper_finetune.inference.transcript import Segment, Transcript, to_srt, to_vtt
from whisper_finetune.serving.errors import ApiError
from whisper_finetune.serving.limits import check_options
from whisper_finetune.serving.runner import (
    Running,
    ServerState,
    check_language,
    check_upload,
    make_job,
    options_for,
)

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
MODEL_OWNER = "whisper-finetune"


def _usage(duration: float) -> dict:
    return {"type": "duration", "seconds": int(math.ceil(duration))}


def verbose_json(state: ServerState, result, task: str, granularities: list[str]) -> dict:
    """OpenAI's ``verbose_json``: segments (and words when asked) with their timing."""
    transcript: Transcript = result.transcript
    code = transcript.language or ""
    body = {
        "task": task,
        "language": state.languages.get(code, code),
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {
                **(result.details[i] if i < len(result.details) else {"id": i}),
                "id": i,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
            }
            for i, s in enumerate(transcript.segments)
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
            for s in transcript.segments
            for w in s.words
        ]
    body["usage"] = _usage(transcript.duration)
    return body


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def register(app, state: ServerState, max_audio_seconds: float | None = None) -> None:
    """Add the OpenAI-compatible routes to ``app``; longer audio than
    ``max_audio_seconds`` is refused (413) while it is decoded."""
    from fastapi import Depends, File, Form, Request, UploadFile
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [_model_card(state)]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict:
        card = _model_card(state)
        if model_id not in (card["id"], "whisper-1"):
            raise ApiError(
                404,
                f"model {model_id!r} is not served here; this server serves {card['id']!r}",
                param="model",
                code="model_not_found",
            )
        return card

    async def handle(
        request: Request,
        task: str,
        file,
        model,
        language,
        prompt,
        response_format,
        temperature,
        granularities,
        stream,
        to_simple,
        remove_pun,
    ):
        # every field is checked before the upload is touched or a slot taken
        if response_format not in RESPONSE_FORMATS:
            raise ApiError(
                422,
                f"response_format must be one of {list(RESPONSE_FORMATS)}, got {response_format!r}",
                param="response_format",
                code="invalid_value",
            )
        if not (math.isfinite(temperature) and 0.0 <= temperature <= 1.0):
            raise ApiError(
                422,
                f"temperature must be between 0 and 1, got {temperature}",
                param="temperature",
                code="invalid_value",
            )
        granularities = list(granularities or [])
        bad = [g for g in granularities if g not in GRANULARITIES]
        if bad:
            raise ApiError(
                422,
                f"timestamp_granularities[] must be among {list(GRANULARITIES)}, got {bad}",
                param="timestamp_granularities[]",
                code="invalid_value",
            )
        if granularities and response_format != "verbose_json":
            raise ApiError(
                422,
                "timestamp_granularities[] needs response_format=verbose_json",
                param="timestamp_granularities[]",
                code="invalid_value",
            )
        words = "word" in granularities
        if words and state.backend not in ("ct2", ""):
            raise ApiError(
                422,
                "word timestamps need the ct2 backend (serve --backend=ct2)",
                param="timestamp_granularities[]",
                code="unsupported_value",
            )
        if stream and response_format not in ("json", "text"):
            raise ApiError(
                422,
                "stream=true works with response_format json or text",
                param="stream",
                code="invalid_value",
            )
        options = options_for(
            state,
            {"temperature": "temperature"},
            language=check_language(state, language) if task == "transcribe" else None,
            task=task,
            temperature=temperature,
            initial_prompt=prompt or None,
            word_timestamps=True if words else None,
        )
        check_options(options, {"initial_prompt": "prompt"})
        name = check_upload(state, file, "file")
        job = make_job(file, name, options, to_simple, remove_pun)
        job = dataclasses.replace(job, max_seconds=max_audio_seconds)
        running = Running(state, request, job)
        if stream:
            await running.started()  # undecodable audio is still a 415, not an event
            return StreamingResponse(
                _events(running),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        result = await running.result()
        transcript = result.transcript
        if response_format == "json":
            return JSONResponse({"text": transcript.text, "usage": _usage(transcript.duration)})
        if response_format == "verbose_json":
            return JSONResponse(verbose_json(state, result, task, granularities))
        if response_format == "text":
            return PlainTextResponse(transcript.text + "\n")
        if response_format == "srt":
            return PlainTextResponse(to_srt(transcript), media_type="application/x-subrip")
        return PlainTextResponse(to_vtt(transcript), media_type="text/vtt")

    async def audio_form(
        file: UploadFile | None = File(None),
        model: str | None = Form(None),
        prompt: str | None = Form(None),
        response_format: str = Form("json"),
        temperature: float = Form(0.0),
        timestamp_granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
        stream: bool = Form(False),
        to_simple: bool = Form(False),
        remove_pun: bool = Form(False),
    ) -> dict:
        """The multipart fields both endpoints share (translations has no ``language``)."""
        return dict(
            file=file,
            model=model,
            prompt=prompt,
            response_format=response_format,
            temperature=temperature,
            granularities=timestamp_granularities,
            stream=stream,
            to_simple=to_simple,
            remove_pun=remove_pun,
        )

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(
        request: Request,
        form: dict = Depends(audio_form),
        language: str | None = Form(None),
    ):
        return await handle(request, "transcribe", language=language, **form)

    @app.post("/v1/audio/translations")
    async def translations(request: Request, form: dict = Depends(audio_form)):
        return await handle(request, "translate", language=None, **form)


def _model_card(state: ServerState) -> dict:
    return {
        "id": state.model_name or "whisper",
        "object": "model",
        "created": 0,
        "owned_by": MODEL_OWNER,
        "backend": state.backend,
    }


async def _events(running: Running):
    """Server-sent events: a delta per segment, then the whole text; errors as an event."""
    text = ""
    try:
        async for kind, value in running.segments():
            if kind == "segment":
                segment, detail = value
                delta = (
                    segment.text
                    if not text or _joins_tight(text, segment.text)
                    else " " + segment.text
                )
                text += delta
                yield _sse(
                    {
                        "type": "transcript.text.delta",
                        "delta": delta,
                        "segment": {
                            "id": detail["id"],
                            "start": round(segment.start, 3),
                            "end": round(segment.end, 3),
                            "text": segment.text,
                        },
                    }
                )
            elif kind == "done":
                transcript = value.transcript
                yield _sse(
                    {
                        "type": "transcript.text.done",
                        "text": transcript.text,
                        "language": transcript.language,
                        "duration": round(transcript.duration, 3),
                    }
                )
    except ApiError as exc:
        if exc.status != 499:  # nobody is left to tell about a disconnect
            yield _sse(
                {
                    "type": "error",
                    "error": {
                        "message": exc.message,
                        "type": "server_error",
                        "param": exc.param,
                        "code": exc.code,
                    },
                }
            )


def _joins_tight(text: str, part: str) -> bool:
    """Whether two texts join without a space (either side CJK), as transcripts do."""
    pair = (Segment(0.0, 0.0, text), Segment(0.0, 0.0, part))
    return Transcript.from_segments(pair, None, 0.0).text == text + part
