"""Helpers for real server processes on loopback (``whisper-finetune serve`` with the embedded model).

Each server listens on a free port the OS picks (``--port=0``); the port is read from
the server's own "serving ... on http://127.0.0.1:PORT" log line, so tests never race
for a port. Logs go to a file the tests read (one line per request).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVING_LINE = re.compile(r"serving .* on (http://127\.0\.0\.1:(\d+))")
START_TIMEOUT = 300  # seconds: loading the model on a busy 2-core machine


@dataclass
class LiveServer:
    url: str
    log: Path
    process: subprocess.Popen
    api_key: str | None = None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def health(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/health", timeout=10).json()


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "whisper_finetune", "serve", *args]


def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.pop("WHISPER_FINETUNE_API_KEY", None)
    env.update(extra)
    return env


def start_server(
    log: Path, *args: str, env: dict[str, str] | None = None, api_key=None
) -> LiveServer:
    """Start ``serve`` with ``args`` and wait until it says where it listens."""
    handle = log.open("w", encoding="utf-8")
    process = subprocess.Popen(
        serve_command("--port=0", "--compute_type=int8", "--language=zh", *args),
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env or server_env(),
        cwd=REPO,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = SERVING_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
        if match:
            return LiveServer(match.group(1), log, process, api_key)
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"the server did not start; its log:\n{log.read_text(errors='replace')}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()
