"""An HTTP server over one loaded :class:`~whisper_finetune.inference.base.Transcriber`.

``create_app`` receives an already-loaded transcriber (never a module-level global) and
default :class:`~whisper_finetune.inference.transcript.DecodeOptions`; each request may vary
them without touching shared state (``dataclasses.replace``). Inference runs in a
bounded worker pool (:mod:`.queue`), never on the event loop, so ``/health`` and the
page answer at once while the model is busy.

Routes:

- ``GET /``: the web page (upload or record, streamed transcript, copy, SRT download).
- ``GET /health``: ``{"status": "ok", "model", "backend", "queue": {...}}``.
- ``GET /v1/models``, ``POST /v1/audio/transcriptions``, ``POST /v1/audio/translations``:
  OpenAI's audio API (:mod:`.openai_api`).
- ``POST /v1/transcribe`` and ``POST /recognition``: the earlier endpoints (:mod:`.legacy`).

``serve`` checks its settings and binds the port before it loads the model, so a bad or
taken port fails in a second with a clear message. It also bounds what clients can hold:
decoded audio (``--max_audio_seconds``, :mod:`.decode`), decoding options
(:mod:`.limits`), open connections and the time a request head or body may take
(:mod:`.connections`, :mod:`.guard`), and which ``Host`` a request may name
(``--allowed_hosts``: DNS rebinding).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
from dataclasses import dataclass

from whisper_finetune.inference.base import BACKENDS
from whisper_finetune.serving import legacy, openai_api, page, realtime
from whisper_finetune.serving.errors import install_handlers
from whisper_finetune.serving.guard import Guard
from whisper_finetune.serving.limits import check_defaults
from whisper_finetune.serving.queue import WorkQueue
from whisper_finetune.serving.runner import ServerState, whisper_languages

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # 100 MiB: about 50 min of 16-bit 16 kHz wav
API_KEY_ENV = "WHISPER_FINETUNE_API_KEY"


@dataclass(frozen=True)
class ServeConfig:
    """Where and how to serve."""

    model_path: str = dataclasses.field(
        default="embedded:whisper-base",
        metadata={"help": "model folder, hub id or embedded:whisper-base"},
    )
    backend: str = dataclasses.field(
        default="ct2", metadata={"help": "one of " + ", ".join(BACKENDS), "choices": list(BACKENDS)}
    )
    compute_type: str = dataclasses.field(
        default="default",
        metadata={"help": "ct2: int8, float32, float16, ...; transformers: float32, float16"},
    )
    host: str = dataclasses.field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = dataclasses.field(
        default=5000, metadata={"help": "port to listen on (0: any free port)"}
    )
    max_upload_mb: int = dataclasses.field(
        default=100, metadata={"help": "largest accepted upload, MiB"}
    )
    api_key: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": f"require 'Authorization: Bearer KEY' on /v1 and /recognition (or set {API_KEY_ENV})"
        },
    )
    max_queue: int = dataclasses.field(
        default=8, metadata={"help": "requests that may wait for a worker; more get HTTP 429"}
    )
    workers: int = dataclasses.field(
        default=1, metadata={"help": "transcriptions run in parallel (ct2 workers on one model)"}
    )
    cpu_threads: int = dataclasses.field(
        default=0, metadata={"help": "CPU threads per worker; 0 = the library's default"}
    )
    max_audio_seconds: float = dataclasses.field(
        default=3600.0,
        metadata={
            "help": "longest audio accepted, seconds, checked while decoding (a small file "
            "can hold hours); longer gets HTTP 413"
        },
    )
    max_connections: int = dataclasses.field(
        default=1000,
        metadata={
            "help": "open connections; past it the one idle longest is closed (kept under "
            "the open-file limit, which is raised to its hard limit at start)"
        },
    )
    header_timeout: float = dataclasses.field(
        default=10.0,
        metadata={"help": "seconds a connection has to send a whole request head"},
    )
    body_timeout: float = dataclasses.field(
        default=30.0,
        metadata={
            "help": "seconds a request body has, plus 1 s per 16 KiB received; a slower "
            "body gets HTTP 408"
        },
    )
    allowed_hosts: str = dataclasses.field(
        default="",
        metadata={
            "help": "comma-separated host names the Host header may carry (*.example.com "
            "for subdomains, * for any); empty = this machine's names when --host is all "
            "interfaces, else the --host name; IP addresses and localhost always pass"
        },
    )

    def check(self) -> None:
        """Raise ValueError for settings that cannot work, before anything is loaded."""
        if not 0 <= self.port <= 65535:
            raise ValueError(
                f"--port must be between 1 and 65535 (or 0 for any free port), got {self.port}"
            )
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.max_queue < 0:
            raise ValueError(f"--max_queue must be >= 0, got {self.max_queue}")
        if self.max_upload_mb < 1:
            raise ValueError(f"--max_upload_mb must be >= 1, got {self.max_upload_mb}")
        if self.cpu_threads < 0:
            raise ValueError(f"--cpu_threads must be >= 0, got {self.cpu_threads}")
        for flag, value in (
            ("max_audio_seconds", self.max_audio_seconds),
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{flag} must be a number of seconds > 0, got {value}")
        if self.max_connections < 16:
            raise ValueError(f"--max_connections must be >= 16, got {self.max_connections}")
        check_api_key(self.api_key, "--api_key")


def check_api_key(key: str | None, origin: str) -> None:
    """A key a client can send: printable ASCII without spaces (HTTP headers are Latin-1,
    and clients encode them as ASCII)."""
    if key and not all("!" <= ch <= "~" for ch in key):
        bad = next(ch for ch in key if not "!" <= ch <= "~")
        raise ValueError(
            f"{origin}: the API key holds {bad!r}; a client cannot send it in an HTTP header. "
            "Use printable ASCII without spaces (letters, digits, -_.~ and the like)"
        )


def allowed_host_names(setting: str, host: str) -> tuple[str, ...] | None:
    """The names ``Host`` may carry (see :func:`whisper_finetune.serving.guard.host_allowed`),
    or None (``*``: no check). Empty ``setting``: ``host`` if it is a name, and this
    machine's names when ``host`` is every interface."""
    names = [n.strip().lower().rstrip(".") for n in setting.split(",") if n.strip()]
    if "*" in names:
        return None
    if not names:
        if host in ("", "0.0.0.0", "::"):
            names = [socket.gethostname().lower(), socket.getfqdn().lower()]
        else:
            names = [host.lower().strip("[]")]
    return tuple(dict.fromkeys(["localhost", *names]))


def create_app(
    transcriber,
    defaults=None,
    *,
    model_name: str = "",
    backend: str = "",
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    api_key: str | None = None,
    max_queue: int = 8,
    workers: int = 1,
    max_audio_seconds: float | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
    body_timeout: float | None = None,
):
    """Build the ASGI application around a loaded transcriber.

    Args:
        transcriber: any object with ``transcribe(audio, options) -> Transcript``; a ct2
            transcriber's ``stream`` is used to hand segments on as they are decoded.
        defaults: the :class:`DecodeOptions` that requests start from.
        model_name: the model id ``/health`` and ``/v1/models`` show.
        backend: shown by ``/health``.
        max_upload_bytes: larger uploads get HTTP 413.
        api_key: when set, ``/v1/...`` and ``/recognition`` need ``Authorization: Bearer``.
        max_queue: requests that may wait for a worker; more get HTTP 429.
        workers: requests transcribed at the same time.
        max_audio_seconds: longer decoded audio gets HTTP 413; None: no limit.
        allowed_hosts: names a ``Host`` header may carry (see :class:`Guard`); None: any.
        body_timeout: seconds a request body has (see :class:`Guard`); None: no limit.

    Returns:
        the ASGI application (the FastAPI app behind the :class:`Guard` middleware).
    """
    from fastapi import FastAPI

    from whisper_finetune.inference.transcript import DecodeOptions

    queue = WorkQueue(workers, max_queue)
    state = ServerState(
        transcriber=transcriber,
        defaults=defaults or DecodeOptions(),
        queue=queue,
        model_name=model_name,
        backend=backend or getattr(transcriber, "backend", ""),
        max_upload_bytes=max_upload_bytes,
        languages=whisper_languages(),
    )
    # no /docs: Swagger UI loads its scripts from a CDN, and the server must work offline
    app = FastAPI(title="whisper-finetune", version="1", docs_url=None, redoc_url=None)
    app.state.server = state
    install_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": model_name,
            "backend": state.backend,
            "queue": queue.stats(),
        }

    page.register(app, state)
    openai_api.register(app, state, max_audio_seconds)
    legacy.register(app, state, max_audio_seconds)
    realtime.register(app, state, api_key, max_audio_seconds)  # WebSocket /v1/realtime (live)
    app.add_middleware(
        Guard,
        api_key=api_key,
        max_upload_bytes=max_upload_bytes,
        queue=queue,
        allowed_hosts=allowed_hosts,
        body_timeout=body_timeout,
    )
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a clear OSError when that is impossible."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the port is already in use" if exc.errno in (98, 48, 10048) else exc.strerror
        raise OSError(f"cannot listen on {host}:{port}: {reason}") from exc
    sock.set_inheritable(True)
    return sock


def serve(config: ServeConfig, defaults=None) -> None:
    """Check the settings, bind the port, load the model once, serve until interrupted."""
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.serving.connections import RateLimitedLog, build_server, run_server

    config.check()
    languages = whisper_languages()
    if (
        defaults is not None
        and defaults.language
        and languages
        and defaults.language not in languages
    ):
        raise ValueError(
            f"--language {defaults.language!r} is not a language Whisper knows; use a code such as zh or en"
        )
    if defaults is not None:
        check_defaults(defaults)
    api_key = config.api_key or os.environ.get(API_KEY_ENV) or None
    if not config.api_key:
        check_api_key(api_key, API_KEY_ENV)
    allowed_hosts = allowed_host_names(config.allowed_hosts, config.host)
    sock = bind(config.host, config.port)
    app = None
    try:
        host, port = sock.getsockname()[:2]
        transcriber = load_transcriber(
            config.model_path,
            config.backend,
            compute_type=config.compute_type,
            cpu_threads=config.cpu_threads,
            num_workers=config.workers,
        )
        app = create_app(
            transcriber,
            defaults,
            model_name=config.model_path,
            backend=config.backend,
            max_upload_bytes=config.max_upload_mb * 1024 * 1024,
            api_key=api_key,
            max_queue=config.max_queue,
            workers=config.workers,
            max_audio_seconds=config.max_audio_seconds,
            allowed_hosts=allowed_hosts,
            body_timeout=config.body_timeout,
        )
        shown = f"[{host}]" if ":" in host else host
        logger.info(
            "serving %s (%s, %d worker(s), queue %d%s) on http://%s:%d",
            config.model_path,
            config.backend,
            config.workers,
            config.max_queue,
            ", API key required" if api_key else "",
            shown,
            port,
        )
        # one log line per request (ours): faster-whisper's per-call lines stay out
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        log = RateLimitedLog()
        server = build_server(
            app,
            max_connections=config.max_connections,
            header_timeout=config.header_timeout,
            log=log,
        )
        run_server(server, sock, log)
    finally:
        sock.close()
        if app is not None:
            app.state.server.queue.shutdown()
