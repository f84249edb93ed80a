"""Errors the server answers with, in OpenAI's envelope.

Every error body is ``{"error": {"message", "type", "param", "code"}}``, as OpenAI's API
sends it (the official client reads ``error.message``). The two endpoints kept from
earlier versions add their own keys to the same body: ``/v1/transcribe`` a ``detail``
(FastAPI's shape, which it always answered with), ``/recognition`` the original
project's ``{"code": 1, "msg": ...}``.
"""

from __future__ import annotations

from typing import Any

# HTTP status -> OpenAI error type
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
    499: "client_closed_request",
    500: "server_error",
    503: "server_error",
}

LEGACY_PATHS = ("/v1/transcribe", "/recognition")


class ApiError(Exception):
    """An error answered as ``status`` with OpenAI's envelope.

    Args:
        status: the HTTP status.
        message: what went wrong, for a person.
        param: the request field at fault, if any.
        code: a short machine-readable code (``"invalid_value"``, ``"queue_full"``, ...).
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None, path: str = ""
) -> dict[str, Any]:
    """The JSON body of an error; endpoints kept from earlier versions get their keys too."""
    body: dict[str, Any] = {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(
                status, "invalid_request_error" if status < 500 else "server_error"
            ),
            "param": param,
            "code": code,
        }
    }
    if path == "/v1/transcribe":
        body["detail"] = message
    elif path == "/recognition":
        body = {"code": 1, "msg": message, "detail": message, **body}
    return body


def install_handlers(app) -> None:
    """Answer ApiError, FastAPI's validation errors and HTTP errors in the envelope."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def respond(request, status: int, message: str, param=None, code=None, headers=None):
        request.scope.setdefault("state", {})["error"] = message
        return JSONResponse(
            error_body(status, message, param, code, request.url.path),
            status_code=status,
            headers=headers,
        )

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return respond(request, exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "header")]
        param = loc[0] if loc else None
        if first.get("type") == "missing":
            # a required field (the audio file) is absent: a malformed request, not a bad value
            return respond(
                request, 400, f"missing required field {param!r}", param, "missing_field"
            )
        message = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in errors
        )
        return respond(request, 422, message, param, "invalid_value")

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        code = {
            413: "file_too_large",
            404: "not_found",
            405: "method_not_allowed",
            408: "request_timeout",
        }.get(exc.status_code)
        return respond(
            request, exc.status_code, str(exc.detail), None, code, getattr(exc, "headers", None)
        )
