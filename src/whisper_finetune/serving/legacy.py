"""The endpoints kept from earlier versions: ``/v1/transcribe`` and ``/recognition``.

- ``POST /v1/transcribe`` (multipart ``audio``; ``language``, ``task``, ``beam_size``,
  ``without_timestamps``, ``to_simple`` (default on), ``remove_pun``, ``output_format`` =
  ``json|txt|srt|vtt``): the transcript JSON ``{"language","duration","results","text"}``
  or the text in that format, as it always answered. Errors carry ``detail`` as well as
  OpenAI's ``error`` object.
- ``POST /recognition`` (multipart ``audio``; ``to_simple`` (default 1), ``remove_pun``,
  ``language``, ``task``): the original project's ``infer_server.py`` shape,
  ``{"code": 0, "msg": "success", "results": [{"start","end","text"}]}``; errors are
  ``{"code": 1, "msg": ...}`` (plus ``error``) with the HTTP status of the failure.

Both share the queue and the checks of the OpenAI endpoints; undecodable audio is a 400
here, as it always was.
"""

# no "from __future__ import annotations": FastAPI resolves the endpoints' annotations
# at runtime, and they name classes imported inside register()

import dataclasses

from whisper_finetune.inference.transcript import OUTPUT_FORMATS, format_transcript
from whisper_finetune.serving.errors import ApiError
from whisper_finetune.serving.limits import check_options
from whisper_finetune.serving.runner import (
    Running,
    ServerState,
    check_language,
    check_task,
    check_upload,
    make_job,
    options_for,
)


def register(app, state: ServerState, max_audio_seconds: float | None = None) -> None:
    """Add ``/v1/transcribe`` and ``/recognition`` to ``app`` (``max_audio_seconds``: see
    :func:`whisper_finetune.serving.openai_api.register`)."""

    def job_for(upload, name, options, to_simple, remove_pun):
        job = make_job(upload, name, options, to_simple, remove_pun)
        return dataclasses.replace(job, max_seconds=max_audio_seconds)

    from fastapi import File, Form, Request, UploadFile
    from fastapi.responses import JSONResponse, PlainTextResponse

    @app.post("/v1/transcribe")
    async def transcribe(
        request: Request,
        audio: UploadFile | None = File(None),
        language: str | None = Form(None),
        task: str | None = Form(None),
        beam_size: int | None = Form(None),
        without_timestamps: bool | None = Form(None),
        to_simple: bool = Form(True),
        remove_pun: bool = Form(False),
        output_format: str = Form("json"),
    ):
        if output_format not in OUTPUT_FORMATS:
            raise ApiError(
                422,
                f"output_format must be one of {list(OUTPUT_FORMATS)}, got {output_format!r}",
                param="output_format",
                code="invalid_value",
            )
        options = options_for(
            state,
            {"beam_size": "beam_size", "task": "task"},
            language=check_language(state, language),
            task=check_task(task),
            beam_size=beam_size,
            without_timestamps=without_timestamps,
        )
        check_options(options)
        name = check_upload(state, audio, "audio")
        running = Running(
            state, request, job_for(audio, name, options, to_simple, remove_pun), audio_status=400
        )
        transcript = (await running.result()).transcript
        if output_format == "json":
            return JSONResponse(transcript.to_dict())
        return PlainTextResponse(format_transcript(transcript, output_format))

    @app.post("/recognition")
    async def recognition(
        request: Request,
        audio: UploadFile | None = File(None),
        to_simple: bool = Form(True),
        remove_pun: bool = Form(False),
        language: str | None = Form(None),
        task: str | None = Form(None),
    ):
        options = options_for(
            state, {"task": "task"}, language=check_language(state, language), task=check_task(task)
        )
        check_options(options)
        name = check_upload(state, audio, "audio")
        running = Running(
            state, request, job_for(audio, name, options, to_simple, remove_pun), audio_status=400
        )
        transcript = (await running.result()).transcript
        results = [s.to_dict() for s in transcript.segments]
        for r in results:
            r.pop("words", None)
        return JSONResponse({"code": 0, "msg": "success", "results": results})
