"""The web page at ``/``: one HTML file (script and style inside) shipped as package data.

It uploads a file or records from the microphone, streams the transcript with its
timestamps from ``/v1/audio/transcriptions`` (``stream=true``), copies it and downloads
SRT. Its Live button streams the microphone to ``/v1/realtime`` (:mod:`.realtime`) and
shows each item's text as it is committed. No build step and no CDN: it works offline. Only this one fixed file is served;
no request names a path.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def page_html() -> str:
    """The page's HTML, read once from the package."""
    return (resources.files("whisper_finetune.serving") / "static" / "index.html").read_text(
        encoding="utf-8"
    )


def register(app, state) -> None:
    """Add ``GET /`` (the page) and ``GET /favicon.ico`` (empty) to ``app``."""
    from fastapi.responses import HTMLResponse, Response

    @app.get("/", include_in_schema=False)
    async def index():
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)
