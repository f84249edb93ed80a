"""The gate every request passes: API key, body size, a full queue, and one log line.

A plain ASGI middleware, so it answers before FastAPI reads a byte of the body:

- **key**: with an API key set, ``/v1/...`` and ``/recognition`` need
  ``Authorization: Bearer KEY`` (401 otherwise); ``/``, ``/health`` stay open.
- **size**: a ``Content-Length`` over the limit is a 413 at once; a body without one is
  counted as it arrives and cut off at the limit (413), so nothing larger than the
  limit is ever spooled to the temporary file.
- **queue**: an inference request that arrives while the queue is full is a 429 with
  ``Retry-After`` before its upload is read.
- **host**: with ``allowed_hosts`` set, a ``Host`` header naming another host is a 400
  (a WebSocket is closed, 403), so that a web page cannot reach a local server by DNS
  rebinding; IP literals and ``localhost`` always pass (a rebinding needs a DNS name).
- **slow bodies**: with ``body_timeout`` set, a body must arrive within ``body_timeout``
  seconds plus one second per :data:`BODY_MIN_RATE` bytes received (Apache's
  ``mod_reqtimeout`` rule); a body that trickles slower is a 408 and the connection
  is closed. Request heads are timed out by :mod:`.connections`.
- **log**: one line per request: method, path, status, audio seconds, wall time.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
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
BODY_MIN_RATE = 16 * 1024  # bytes a second a body must average after its first body_timeout s


def protected(path: str) -> bool:
    return path.startswith("/v1/") or path == "/recognition"


def header_map(scope) -> dict[str, str]:
    """A request's headers, names lower-cased (Latin-1, as HTTP sends them)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def key_refusal(headers: dict[str, str], api_key: str | None):
    """(status, message, code, headers) when ``Authorization`` lacks the key; None when fine.

    The check every keyed route makes, HTTP or WebSocket (``headers``: :func:`header_map`).
    """
    if not api_key:
        return None
    given = headers.get("authorization", "")
    token = given[7:].strip() if given[:7].lower() == "bearer " else ""
    if not token:
        return (
            401,
            "missing API key: send the header 'Authorization: Bearer KEY'",
            "missing_api_key",
            {"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.encode("latin-1"), api_key.encode("latin-1")):
        return 401, "incorrect API key provided", "invalid_api_key", {"WWW-Authenticate": "Bearer"}
    return None


def host_allowed(host_header: str, allowed: tuple[str, ...] | None) -> bool:
    """Whether ``Host`` names this server: ``allowed`` names (``*.example.com`` matches
    its subdomains; ``*`` anything; None: no check), ``localhost`` or an IP literal."""
    if allowed is None or "*" in allowed or not host_header:
        return True  # no Host header: HTTP/1.0, not a browser
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if host == "localhost" or host.endswith(".localhost"):
        return True
    return any(
        host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in allowed
    )


class Guard:
    """ASGI middleware; see the module docstring.

    Args:
        app: the application behind it.
        api_key: the key clients must send, or None for an open server.
        max_upload_bytes: the largest file accepted; bodies may exceed it by
            :data:`FORM_SLACK` for the form around the file.
        queue: the :class:`~whisper_finetune.serving.queue.WorkQueue` (for early 429s).
        allowed_hosts: host names a ``Host`` header may carry (see :func:`host_allowed`);
            None: any.
        body_timeout: seconds a body has, plus one per :data:`BODY_MIN_RATE` bytes
            received; None: no limit.
    """

    def __init__(
        self,
        app,
        *,
        api_key: str | None,
        max_upload_bytes: int,
        queue,
        allowed_hosts: tuple[str, ...] | None = None,
        body_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.api_key = api_key or None
        self.max_body = max_upload_bytes + FORM_SLACK
        self.queue = queue
        self.allowed_hosts = allowed_hosts
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not host_allowed(
            header_map(scope).get("host", ""), self.allowed_hosts
        ):
            logger.warning("WebSocket %s refused: Host not allowed", scope.get("path", ""))
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.monotonic()
        state = scope.setdefault("state", {})
        path = scope.get("path", "")
        seen = {"status": 0, "bytes": 0}
        receive = self._timed(receive, seen)

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
                elif message["type"] == "http.disconnect" and not seen["status"]:
                    seen["left"] = (
                        True  # gone before an answer: whatever is answered, nobody reads it
                    )
                return message

            await self.app(scope, counted_receive, send_logged)
        finally:
            audio = state.get("audio_seconds")
            status = 499 if seen.get("left") or not seen["status"] else seen["status"]
            if seen.get("left") or (status == 499 and not state.get("error")):
                state["error"] = "the client closed the connection before the answer"
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

    def _timed(self, receive, seen):
        """``receive`` with the slow-body deadline (408 past it); as is without one."""
        if self.body_timeout is None:
            return receive
        start = time.monotonic()
        done = False

        async def timed_receive():
            nonlocal done
            if done:  # the body is in: later reads wait for a disconnect, unbounded
                return await receive()
            deadline = start + self.body_timeout + seen["body"] / BODY_MIN_RATE
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                from starlette.exceptions import HTTPException

                raise HTTPException(
                    408,
                    f"the request body arrived too slowly: {seen['body']} bytes in "
                    f"{time.monotonic() - start:.0f} s (a body has {self.body_timeout:g} s "
                    f"plus 1 s per {BODY_MIN_RATE} bytes)",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] == "http.request":
                seen["body"] += len(message.get("body", b""))
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        seen["body"] = 0
        return timed_receive

    def _refuse(self, scope, path: str):
        """(status, message, code, headers) when the request is refused at the door."""
        headers = header_map(scope)
        if not host_allowed(headers.get("host", ""), self.allowed_hosts):
            host = headers.get("host", "")[:100]
            return (
                400,
                f"the Host header {host!r} does not name this server; if it should, "
                "start the server with --allowed_hosts naming it",
                "invalid_host",
                {},
            )
        if protected(path):
            refusal = key_refusal(headers, self.api_key)
            if refusal:
                return refusal
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
    the drain stops after ``limit`` bytes, when the client is gone or when its body
    trickles past the slow-body deadline.
    """
    from starlette.exceptions import HTTPException

    read = 0
    while read <= limit:
        try:
            message = await receive()
        except HTTPException:  # too slow: answer now; the connection is closed after
            return
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
