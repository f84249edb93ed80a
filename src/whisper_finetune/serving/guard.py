"""The gate every request passes: API key, body size, a full queue, and one log line.

A plain ASGI middleware, so it answers before FastAPI reads a byte of the body:

- **key**: with an API key set, ``/v1/...`` and ``/recognition`` need
  ``Authorization: Bearer KEY`` (401 otherwise); ``/``, ``/health`` stay open.
- **size**: a ``Content-Length`` over the limit is a 413 at once; a body without one is
  counted as it arrives and cut off at the limit (413), so nothing larger than the
  limit is ever spooled to the temporary file.
- **queue**: an inference request that arrives while the queue is full is a 429 with
  ``Retry-After`` before its upload is read.
- **log**: one line per request: method, path, status, audio seconds, wall time.
"""

from __future__ import annotations

import hmac
import json
import logging
import time

from whisper_finetune.serving.errors import error_body

logger = logging.getLogger("whisper_finetune.serving")

INFERENCE_PATHS = (
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/transcribe",
    "/recognition",
)
FORM_SLACK = 1024 * 1024  # room for the multipart framing and form fields around the file


def protected(path: str) -> bool:
    return path.startswith("/v1/") or path == "/recognition"


class Guard:
    """ASGI middleware; see the module docstring.

    Args:
        app: the application behind it.
        api_key: the key clients must send, or None for an open server.
        max_upload_bytes: the largest file accepted; bodies may exceed it by
            :data:`FORM_SLACK` for the form around the file.
        queue: the :class:`~whisper_finetune.serving.queue.WorkQueue` (for early 429s).
    """

    def __init__(self, app, *, api_key: str | None, max_upload_bytes: int, queue) -> None:
        self.app = app
        self.api_key = api_key or None
        self.max_body = max_upload_bytes + FORM_SLACK
        self.queue = queue

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.monotonic()
        state = scope.setdefault("state", {})
        path = scope.get("path", "")
        seen = {"status": 0, "bytes": 0}

        async def send_logged(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        try:
            refusal = self._refuse(scope, path)
            if refusal:
                state["error"] = refusal[1]
                await _drain(receive, 2 * self.max_body)
                await self._reply(send_logged, path, *refusal)
                return

            async def counted_receive():
                message = await receive()
                if message["type"] == "http.request":
                    seen["bytes"] += len(message.get("body", b""))
                    if seen["bytes"] > self.max_body:
                        from starlette.exceptions import HTTPException

                        raise HTTPException(413, f"request body larger than {self.max_body} bytes")
                return message

            await self.app(scope, counted_receive, send_logged)
        finally:
            audio = state.get("audio_seconds")
            status = seen["status"] or 499
            logger.info(
                "%s %s %d audio=%s time=%.3fs%s%s",
                scope.get("method", "-"),
                path,
                status,
                f"{audio:.2f}s" if isinstance(audio, (int, float)) else "-",
                time.monotonic() - start,
                f" error={state['error']!r}" if state.get("error") and status >= 400 else "",
                " cancelled: the client left" if state.get("cancelled") else "",
            )

    def _refuse(self, scope, path: str):
        """(status, message, code, headers) when the request is refused at the door."""
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        if self.api_key and protected(path):
            given = headers.get("authorization", "")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not token:
                return (
                    401,
                    "missing API key: send the header 'Authorization: Bearer KEY'",
                    "missing_api_key",
                    {"WWW-Authenticate": "Bearer"},
                )
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                return (
                    401,
                    "incorrect API key provided",
                    "invalid_api_key",
                    {"WWW-Authenticate": "Bearer"},
                )
        if scope.get("method") == "POST" and path in INFERENCE_PATHS:
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                return (
                    413,
                    f"request body of {length} bytes is larger than the limit of {self.max_body} bytes",
                    "file_too_large",
                    {},
                )
            if self.queue.full():
                wait = self.queue.retry_after()
                return (
                    429,
                    f"the server is busy; retry in about {wait} s",
                    "queue_full",
                    {"Retry-After": str(wait)},
                )
        return None

    async def _reply(self, send, path, status, message, code, headers):
        body = json.dumps(error_body(status, message, None, code, path)).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"connection", b"close"))  # the body may not have been read in full
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


async def _drain(receive, limit: int) -> None:
    """Read (and drop) what the client is still sending, so that it sees the answer.

    Most clients read the response only once their upload is sent. Nothing is kept;
    the drain stops after ``limit`` bytes or when the client is gone.
    """
    read = 0
    while read <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
