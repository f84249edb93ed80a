"""An HTTP API over a loaded :class:`~whisper_finetune.inference.base.Transcriber`.

``create_app`` receives an already-loaded transcriber (never a module-level global) and
default :class:`~whisper_finetune.inference.transcript.DecodeOptions`; each request may vary
language, task, beam size, timestamps and output format without touching shared
state (``dataclasses.replace``). Endpoints are plain ``def`` functions, so FastAPI runs
the blocking model call in its thread pool instead of stalling the event loop; a lock
serialises calls into one model.

Endpoints:

- ``GET /health``: ``{"status": "ok", "model": ..., "backend": ...}``
- ``POST /v1/transcribe`` (multipart ``audio`` file, optional form fields ``language``,
  ``task``, ``beam_size``, ``without_timestamps``, ``to_simple``, ``remove_pun``,
  ``output_format``): the transcript JSON
  ``{"language","duration","results":[{"start","end","text"}],"text"}``, or txt/srt/vtt.
- ``POST /recognition``: the same, under the original ``infer_server.py`` path.
"""

# no "from __future__ import annotations": FastAPI resolves the endpoint's parameter
# annotations at runtime, and they name classes imported inside create_app
import dataclasses
import io
import logging
import threading
from dataclasses import dataclass

from whisper_finetune.inference.base import BACKENDS

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # 100 MiB: about 50 min of 16-bit 16 kHz wav


@dataclass(frozen=True)
class ServeConfig:
    """Where and how to serve."""

    model_path: str = dataclasses.field(
        default="embedded:whisper-base", metadata={"help": "model folder, hub id or embedded:whisper-base"}
    )
    backend: str = dataclasses.field(
        default="ct2", metadata={"help": "one of " + ", ".join(BACKENDS), "choices": list(BACKENDS)}
    )
    compute_type: str = dataclasses.field(
        default="default", metadata={"help": "ct2: int8, float32, float16, ...; transformers: float32, float16"}
    )
    host: str = dataclasses.field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = dataclasses.field(default=5000, metadata={"help": "port to listen on"})
    max_upload_mb: int = dataclasses.field(default=100, metadata={"help": "largest accepted upload, MiB"})


def create_app(transcriber, defaults=None, *, model_name: str = "", backend: str = "", max_upload_bytes: int = MAX_UPLOAD_BYTES):
    """Build the FastAPI application around a loaded transcriber.

    Args:
        transcriber: any object with ``transcribe(audio, options) -> Transcript``.
        defaults: the :class:`DecodeOptions` that requests start from.
        model_name: shown by ``/health``.
        backend: shown by ``/health``.
        max_upload_bytes: larger uploads get HTTP 413.

    Returns:
        a ``fastapi.FastAPI`` instance.
    """
    from fastapi import FastAPI, File, Form, HTTPException, UploadFile
    from fastapi.responses import JSONResponse, PlainTextResponse

    from whisper_finetune.data.audio import AudioError, load_audio
    from whisper_finetune.inference.transcript import DecodeOptions, format_transcript

    defaults = defaults or DecodeOptions()
    lock = threading.Lock()
    app = FastAPI(title="whisper-finetune", version="1")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model_name, "backend": backend}

    def transcribe(
        audio: UploadFile = File(...),
        language: str | None = Form(None),
        task: str | None = Form(None),
        beam_size: int | None = Form(None),
        without_timestamps: bool | None = Form(None),
        to_simple: bool = Form(True),
        remove_pun: bool = Form(False),
        output_format: str = Form("json"),
    ):
        data = audio.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload larger than {max_upload_bytes} bytes")
        name = audio.filename or "upload"
        try:
            samples = load_audio(io.BytesIO(data))
        except AudioError as exc:
            raise HTTPException(400, f"{name}: {exc}") from exc
        changes = {
            k: v
            for k, v in {"language": language, "task": task, "beam_size": beam_size, "without_timestamps": without_timestamps}.items()
            if v is not None and v != ""
        }
        try:
            options = dataclasses.replace(defaults, **changes)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        with lock:
            result = transcriber.transcribe(samples, options)
        result = result.normalized(remove_punctuation=remove_pun, to_simplified=to_simple)
        if output_format == "json":
            return JSONResponse(result.to_dict())
        try:
            return PlainTextResponse(format_transcript(result, output_format))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc

    app.post("/v1/transcribe")(transcribe)
    app.post("/recognition")(transcribe)
    return app


def serve(config: ServeConfig, defaults=None) -> None:
    """Load the model once and serve it with uvicorn until interrupted."""
    import uvicorn

    from whisper_finetune.inference.loader import load_transcriber

    transcriber = load_transcriber(config.model_path, config.backend, compute_type=config.compute_type)
    app = create_app(
        transcriber,
        defaults,
        model_name=config.model_path,
        backend=config.backend,
        max_upload_bytes=config.max_upload_mb * 1024 * 1024,
    )
    logger.info("serving %s (%s) on http://%s:%d", config.model_path, config.backend, config.host, config.port)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
