"""``serve`` checks its port before it loads the model (issue 10, item 10)."""

from __future__ import annotations

import socket
import subprocess

from serving_live import REPO, serve_command, server_env


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        serve_command(*args),
        capture_output=True,
        text=True,
        env=server_env(),
        cwd=REPO,
        timeout=300,
    )


def test_bad_port_fails_before_loading_the_model():
    # a model path that does not exist: reaching the loader would be a different error
    done = _run("--port=99999", "--model_path=/nonexistent/model")
    assert done.returncode == 1
    assert "--port must be between 1 and 65535" in done.stderr
    assert "Traceback" not in done.stderr
    assert "loading" not in done.stderr and "nonexistent" not in done.stderr


def test_taken_port_fails_without_claiming_to_serve():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _run(f"--port={port}", "--model_path=/nonexistent/model")
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in done.stderr
    assert "serving" not in done.stderr and "loading" not in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_limits_fail_at_once():
    for flag, message in [
        ("--workers=0", "--workers must be >= 1"),
        ("--max_queue=-1", "--max_queue must be >= 0"),
        ("--max_upload_mb=0", "--max_upload_mb must be >= 1"),
        ("--language=xx", "--language 'xx' is not a language Whisper knows"),
    ]:
        done = _run(flag, "--port=0", "--model_path=/nonexistent/model")
        assert done.returncode == 1 and message in done.stderr, done.stderr


def test_a_key_no_client_can_send_and_bad_timeouts_fail_at_once():
    """Issue 27, item 9: HTTP headers are Latin-1 and clients send ASCII; a key with other
    characters could never be sent. Refused at start, from the flag or the environment."""
    done = _run("--api_key=密钥", "--port=0", "--model_path=/nonexistent/model")
    assert done.returncode == 1 and "--api_key: the API key holds '密'" in done.stderr, done.stderr
    done = subprocess.run(
        serve_command("--port=0", "--model_path=/nonexistent/model"),
        capture_output=True,
        text=True,
        env=server_env(WHISPER_FINETUNE_API_KEY="clé"),
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 1 and "WHISPER_FINETUNE_API_KEY: the API key holds 'é'" in done.stderr
    for flag, message in [
        ("--max_audio_seconds=0", "--max_audio_seconds must be a number"),
        ("--header_timeout=nan", "--header_timeout must be a number"),
        ("--max_connections=1", "--max_connections must be >= 16"),
        ("--beam_size=1500", "--beam_size must be at most 10"),
    ]:
        done = _run(flag, "--port=0", "--model_path=/nonexistent/model")
        assert done.returncode == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "nonexistent" not in done.stderr
