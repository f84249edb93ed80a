"""Bad requests, a full queue and a client that goes away, against a real server process:
each gets the right status in OpenAI's error envelope, no decoding work is done for a
bad field, and the server still answers correctly afterwards."""

from __future__ import annotations

import re
import time

import httpx
import pytest

pytestmark = pytest.mark.slow


def _post(server, files=None, data=None, path="/v1/audio/transcriptions", headers=None):
    return httpx.post(
        server.url + path,
        files=files,
        data=data,
        timeout=300,
        headers=server.headers() if headers is None else headers,
    )


def _envelope(r, status, code=None, param=None):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code, error
    if param:
        assert error["param"] == param, error
    return error


BAD_FIELDS = [
    ({"language": "xx"}, "language"),
    ({"response_format": "xml"}, "response_format"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": "3"}, "temperature"),
    ({"temperature": "nan"}, "temperature"),
    (
        {"timestamp_granularities[]": "char", "response_format": "verbose_json"},
        "timestamp_granularities[]",
    ),
    ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]"),  # needs verbose_json
    ({"stream": "maybe"}, "stream"),
    ({"stream": "true", "response_format": "srt"}, "stream"),
]


def test_bad_requests_then_still_correct(live_server, test_wav, cer):
    wav = test_wav.read_bytes()
    done_before = live_server.health()["queue"]["completed"]
    for data, param in BAD_FIELDS:
        error = _envelope(_post(live_server, {"file": ("t.wav", wav)}, data), 422, param=param)
        assert error["type"] == "invalid_request_error"
    # the legacy endpoint checks language and output format before decoding too
    r = _post(live_server, {"audio": ("t.wav", wav)}, {"language": "xx"}, path="/v1/transcribe")
    _envelope(r, 422, "invalid_language", "language")
    assert "xx" in r.json()["detail"]
    r = _post(
        live_server, {"audio": ("t.wav", wav)}, {"output_format": "docx"}, path="/v1/transcribe"
    )
    _envelope(r, 422, param="output_format")
    # no job was run for any of them: rejected before decoding
    assert live_server.health()["queue"]["completed"] == done_before

    _envelope(_post(live_server, data={"model": "whisper-1"}), 400, "missing_file", "file")
    _envelope(_post(live_server, {"file": ("empty.wav", b"")}), 400, "empty_file", "file")
    error = _envelope(
        _post(live_server, {"file": ("noise.wav", b"RIFF\x00\x01 definitely not a wav" * 50)}),
        415,
        "invalid_audio",
    )
    assert "noise.wav" in error["message"]
    error = _envelope(
        _post(live_server, {"file": ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(2000))}),
        415,
        "invalid_audio",
    )
    assert live_server.health()["status"] == "ok"

    r = _post(live_server, {"file": ("test.wav", wav)}, {"model": "whisper-1"})
    assert r.status_code == 200 and cer(r.json()["text"]) <= 0.15
    log = live_server.log_text()
    assert "POST /v1/audio/transcriptions 415 audio=-" in log
    assert "POST /v1/audio/transcriptions 200 audio=8.39s" in log


def test_upload_limits(keyed_server, test_wav, cer):
    # over the 5 MiB file limit but inside the body allowance: the parser's size check
    r = _post(keyed_server, {"file": ("big.wav", b"\0" * (5 * 1024 * 1024 + 10))})
    assert "big.wav" in _envelope(r, 413, "file_too_large", "file")["message"]
    # far over: refused from Content-Length, before the body is stored anywhere
    r = _post(keyed_server, {"file": ("huge.wav", b"\0" * (9 * 1024 * 1024))})
    _envelope(r, 413, "file_too_large")

    # no Content-Length (chunked): counted as it arrives and cut off
    def chunks():
        yield (
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="c.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n"
        )
        for _ in range(9):
            yield b"\0" * (1024 * 1024)
        yield b"\r\n--xyz--\r\n"

    r = httpx.post(
        keyed_server.url + "/v1/audio/transcriptions",
        content=chunks(),
        headers={**keyed_server.headers(), "Content-Type": "multipart/form-data; boundary=xyz"},
        timeout=60,
    )
    _envelope(r, 413, "file_too_large")
    r = _post(keyed_server, {"file": ("test.wav", test_wav.read_bytes())})
    assert r.status_code == 200 and cer(r.json()["text"]) <= 0.15


def test_full_queue_429_and_disconnect_frees_the_slot(keyed_server, long_audio, test_wav, cer):
    """One worker and no queue: while a long stream decodes, a second request is a 429
    with Retry-After; /health answers at once; closing the stream frees the slot."""
    longer_wav, clips = long_audio["longer"]
    url = keyed_server.url + "/v1/audio/transcriptions"
    cancelled_before = keyed_server.health()["queue"]["cancelled"]
    with httpx.stream(
        "POST",
        url,
        files={"file": ("long.wav", longer_wav.read_bytes())},
        data={"stream": "true"},
        headers=keyed_server.headers(),
        timeout=300,
    ) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert "transcript.text.delta" in first  # the job is running and holds the only slot
        busy = keyed_server.health()
        assert busy["queue"]["running"] == 1
        full = _post(keyed_server, {"file": ("test.wav", test_wav.read_bytes())})
        error = _envelope(full, 429, "queue_full")
        assert error["type"] == "rate_limit_exceeded"
        assert int(full.headers["retry-after"]) >= 1
        # the client leaves mid-stream
    deadline = time.monotonic() + 120
    while keyed_server.health()["queue"]["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    queue = keyed_server.health()["queue"]
    assert (queue["running"], queue["queued"], queue["max_queue"]) == (0, 0, 0)
    # the stream's job stopped at its next segment instead of decoding 138 s to the end
    assert queue["cancelled"] == cancelled_before + 1
    seconds = int(clips[-1].end + 0.5)  # the last clip and its pause
    cut = re.compile(
        rf"POST /v1/audio/transcriptions 200 audio={seconds}\.\d\ds .* cancelled: the client left"
    )
    deadline = time.monotonic() + 30  # the log line is written when the response is closed
    while not cut.search(keyed_server.log_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = keyed_server.log_text()
    assert cut.search(log), log
    assert "POST /v1/audio/transcriptions 429 audio=-" in log
    r = _post(keyed_server, {"file": ("test.wav", test_wav.read_bytes())})
    assert r.status_code == 200 and cer(r.json()["text"]) <= 0.15


def test_no_request_chooses_a_path(live_server, test_wav, tmp_path, cer):
    target = tmp_path / "written-by-server.wav"
    for name in [f"../../../../..{target}", "/etc/passwd", "C:\\Windows\\win.ini"]:
        r = _post(live_server, {"file": (name, test_wav.read_bytes())}, {"model": "/etc/passwd"})
        assert r.status_code == 200 and cer(r.json()["text"]) <= 0.15
    assert not target.exists()
    r = httpx.post(
        live_server.url + "/v1/audio/transcriptions",
        files={"file": ("/etc/passwd", b"x")},
        timeout=60,
    )
    message = r.json()["error"]["message"]
    assert r.status_code == 415 and "root:" not in message and message.startswith("passwd:")
    for path in ["/../../etc/passwd", "/static/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"]:
        r = httpx.get(live_server.url + path, timeout=10)
        assert r.status_code == 404 and "root:" not in r.text
    page = httpx.get(live_server.url + "/", timeout=10)
    assert page.status_code == 200 and "<title>whisper-finetune</title>" in page.text
