"""Issue 27, items 6-9: a server that small bombs, idle sockets and oversized options
cannot take down. A fake transcriber (no model); the connection tests run the real
uvicorn server, with ``serve``'s protocol and limits, in a thread on loopback."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import threading
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from whisper_finetune.data.audio import write_wav
from whisper_finetune.data.codec import AudioTooLong, decode_bounded
from whisper_finetune.inference.transcript import DecodeOptions, Segment, Transcript
from whisper_finetune.serving import decode
from whisper_finetune.serving.connections import (
    RateLimitedLog,
    RepeatFilter,
    build_server,
    quiet_loop_errors,
    raise_fd_limit,
    run_server,
)
from whisper_finetune.serving.limits import check_defaults
from whisper_finetune.serving.server import (
    ServeConfig,
    allowed_host_names,
    bind,
    create_app,
)

RATE = 16000
ROUTES = [  # (path, file field)
    ("/v1/audio/transcriptions", "file"),
    ("/v1/audio/translations", "file"),
    ("/v1/transcribe", "audio"),
    ("/recognition", "audio"),
]


class Fake:
    """Records the length of every audio it is given; ``delay`` seconds per call."""

    backend = "fake"

    def __init__(self, delay: float = 0.0):
        self.calls: list[float] = []
        self.delay = delay

    def transcribe(self, audio, options):
        self.calls.append(len(audio) / RATE)
        time.sleep(self.delay)
        seconds = len(audio) / RATE
        return Transcript.from_segments(
            (Segment(0.0, min(1.0, seconds), "你好。"),), options.language or "zh", seconds
        )


def _bombs():
    """The benchmark's own bomb makers, so the test refuses what serve_abuse.py measures."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_abuse.py"
    spec = importlib.util.spec_from_file_location("serve_abuse", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_BOMBS = _bombs()
flac_of_silence = _BOMBS.flac_of_silence  # a FLAC of silence: about 50 bytes a second
aac_of_silence = _BOMBS.aac_of_silence  # ADTS AAC: no length in any header


def wav_bytes(tmp_path, seconds: float) -> bytes:
    path = tmp_path / "a.wav"
    write_wav(path, (0.1 * np.sin(np.arange(int(RATE * seconds)) * 0.05)).astype(np.float32))
    return path.read_bytes()


# --- item 6: decompression bombs, long audio ------------------------------------------


def test_an_hour_in_a_small_flac_is_refused_before_it_is_decoded():
    bomb = flac_of_silence(3600)
    assert len(bomb) < 400_000  # an hour of audio in a few hundred KB
    tracemalloc.start()
    try:
        with pytest.raises(
            AudioTooLong, match=r"bomb.flac: .*limit of 60 s \(its header says 3600"
        ):
            decode_bounded(io.BytesIO(bomb), "bomb.flac", 60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak  # the whole hour would be 230 MB of samples


def test_audio_without_a_length_header_is_refused_while_decoding():
    bomb = aac_of_silence(20)
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLong, match=r"limit of 5 s \(decoding passed 5\.\d s\)"):
            decode_bounded(io.BytesIO(bomb), "bomb.aac", 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 5 * RATE * 4 + 2**20, peak  # about the limit's samples, not the file's
    assert abs(decode_bounded(io.BytesIO(bomb), "ok.aac", 60).size / RATE - 20) < 0.2


def test_every_route_answers_a_bomb_with_413_in_the_envelope():
    fake = Fake()
    client = TestClient(create_app(fake, max_audio_seconds=60))
    for path, field in ROUTES:
        r = client.post(path, files={field: ("bomb.flac", flac_of_silence(600), "audio/flac")})
        assert r.status_code == 413, (path, r.text)
        error = r.json()["error"]
        assert error["code"] == "audio_too_long" and "limit of 60 s" in error["message"], path
        assert error["type"] == "invalid_request_error"
    r = client.post(
        "/v1/audio/transcriptions", files={"file": ("bomb.aac", aac_of_silence(70), "audio/aac")}
    )
    assert r.status_code == 413 and "decoding passed" in r.json()["error"]["message"]
    assert fake.calls == []  # nothing reached the model


def test_long_audio_is_transcribed_in_pieces_cut_at_a_pause(monkeypatch):
    """No backend is handed the whole of a long file (its log-mel would be gigabytes)."""
    monkeypatch.setattr(decode, "PIECE_SECONDS", 10.0)
    monkeypatch.setattr(decode, "QUIET_SEARCH_SECONDS", 4.0)
    t = np.arange(25 * RATE) / RATE
    samples = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    samples[int(7.5 * RATE) : int(8.2 * RATE)] = 0.0  # a pause inside the first search span
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format="WAV")
    fake = Fake()
    job = decode.Job(buffer, "long.wav", DecodeOptions(language="zh"), max_seconds=60)
    result = decode.run(fake, job, threading.Event())
    assert len(fake.calls) == 3 and max(fake.calls) <= 10.0, fake.calls
    assert 7.5 <= fake.calls[0] <= 8.2  # the first piece ends inside the pause
    assert abs(sum(fake.calls) - 25.0) < 1e-6  # nothing lost or read twice
    starts = [s.start for s in result.transcript.segments]
    assert starts == pytest.approx(np.cumsum([0.0, *fake.calls[:-1]]))
    assert result.transcript.duration == pytest.approx(25.0)


# --- item 8: bounded options, cancellation --------------------------------------------


def test_options_beyond_the_bounds_are_refused_on_every_route(tmp_path):
    fake = Fake()
    client = TestClient(create_app(fake))
    audio = wav_bytes(tmp_path, 1.0)
    r = client.post("/v1/transcribe", files={"audio": ("a.wav", audio)}, data={"beam_size": "1500"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "beam_size", r.text
    assert "at most 10, got 1500" in r.json()["detail"]
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
        r = client.post(path, files={"file": ("a.wav", audio)}, data={"prompt": "好" * 5000})
        assert r.status_code == 422 and r.json()["error"]["param"] == "prompt", r.text
        assert r.json()["error"]["code"] == "option_out_of_range"
    assert fake.calls == []
    r = client.post("/v1/transcribe", files={"audio": ("a.wav", audio)}, data={"beam_size": "5"})
    assert r.status_code == 200 and fake.calls == [1.0]
    # a route that sets no option still runs with bounded ones: the server's defaults
    for bad, flag in [
        (DecodeOptions(beam_size=50), "--beam_size must be at most 10"),
        (
            DecodeOptions(temperature_increment_on_fallback=0.01),
            "--temperature_increment_on_fallback gives 101 fallback temperatures",
        ),
        (DecodeOptions(initial_prompt="x" * 2000), "--initial_prompt is 2000"),
    ]:
        with pytest.raises(ValueError, match=flag):
            check_defaults(bad)


@contextmanager
def running_server(app, **limits):
    """``serve``'s uvicorn server (protocol, limits, loop error log) in a thread."""
    sock = bind("127.0.0.1", 0)
    log = RateLimitedLog()
    server = build_server(app, log=log, **limits)
    thread = threading.Thread(target=run_server, args=(server, sock, log), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def test_a_client_that_leaves_stops_its_job_on_every_route(tmp_path, monkeypatch):
    """A backend that transcribes in one call (not ct2) is stopped between two pieces."""
    import httpx

    monkeypatch.setattr(decode, "PIECE_SECONDS", 2.0)
    monkeypatch.setattr(decode, "QUIET_SEARCH_SECONDS", 1.0)
    fake = Fake(delay=0.6)
    app = create_app(fake)
    queue = app.state.server.queue
    audio = wav_bytes(tmp_path, 10.0)  # five pieces, 3 s of work
    with running_server(app, max_connections=100, header_timeout=5) as port:
        for n, (path, field) in enumerate(ROUTES, 1):
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(
                    f"http://127.0.0.1:{port}{path}",
                    files={field: ("a.wav", audio)},
                    timeout=httpx.Timeout(5, read=0.3),
                )
            deadline = time.monotonic() + 10
            while queue.stats()["cancelled"] < n and time.monotonic() < deadline:
                time.sleep(0.05)
            assert queue.stats()["cancelled"] == n, (path, queue.stats())
            assert queue.stats()["running"] == 0
    assert len(fake.calls) <= 2 * len(ROUTES)  # one or two pieces each, never five


# --- item 7: idle and slow connections ------------------------------------------------


def _open(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if data:
        sock.sendall(data)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.settimeout(0.01)
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (TimeoutError, BlockingIOError):
        return False


def test_idle_and_half_sent_connections_are_bounded_and_timed_out():
    import httpx

    app = create_app(Fake())
    with running_server(app, max_connections=40, header_timeout=1.5) as port:
        idle = [_open(port) for _ in range(60)]
        half = [_open(port, b"GET /health HTTP/1.1\r\nHost: x\r\n") for _ in range(20)]
        time.sleep(0.3)
        started = time.monotonic()
        r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert r.status_code == 200 and time.monotonic() - started < 1.0
        # past the bound, the connections idle longest were closed at once
        assert sum(_closed_by_server(s) for s in idle[:40]) >= 35
        time.sleep(2.0)  # past the header timeout every one of them is closed
        assert all(_closed_by_server(s) for s in idle + half)
        for s in idle + half:
            s.close()
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


def test_a_body_that_trickles_gets_408_and_the_connection_closes(tmp_path):
    app = create_app(Fake(), body_timeout=1.0)
    with running_server(app, max_connections=100, header_timeout=5) as port:
        sock = _open(
            port,
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n",
        )
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.4)
        while time.monotonic() - started < 6 and b"}" not in answer:
            try:
                sock.sendall(b"x")  # one byte every 0.4 s
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b'"code":"request_timeout"' in answer and b"arrived too slowly" in answer
        assert time.monotonic() - started < 3
        time.sleep(0.2)
        assert _closed_by_server(sock)
        sock.close()


def test_a_client_that_leaves_mid_body_is_logged_as_gone(caplog):
    """Not as FastAPI's "There was an error parsing the body" (400) answered to nobody."""
    app = create_app(Fake(), body_timeout=10.0)
    with (
        caplog.at_level(logging.INFO, logger="whisper_finetune.serving"),
        running_server(app, max_connections=100, header_timeout=5) as port,
    ):
        sock = _open(
            port,
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n",
        )
        time.sleep(0.3)
        sock.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            "POST /v1/audio/transcriptions" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if "POST /v1/audio" in r.getMessage()]
    assert len(lines) == 1 and " 499 " in lines[0], lines
    assert "the client closed the connection before the answer" in lines[0]


def test_the_open_file_limit_is_raised_to_the_hard_limit():
    import resource

    soft = raise_fd_limit()
    now, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == now and (now == hard or hard == resource.RLIM_INFINITY)


def test_refused_accepts_are_logged_once_per_interval(caplog):
    clock = [0.0]
    log = RateLimitedLog(interval=60, clock=lambda: clock[0])
    loop = asyncio.new_event_loop()
    try:
        quiet_loop_errors(loop, log)
        context = {
            "message": "socket.accept() out of system resource",
            "exception": OSError(24, "Too many open files"),
        }
        with caplog.at_level(logging.INFO, logger="whisper_finetune.serving"):
            for _ in range(1000):
                loop.call_exception_handler(context)
                clock[0] += 0.01  # 1000 refusals in 10 s
            clock[0] = 61.0
            loop.call_exception_handler(context)
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "refusing new connections: Too many open files" in lines[0]
    assert "(999 more like it in the last 61 s, not logged)" in lines[1]
    assert all(r.exc_info is None for r in caplog.records)  # no traceback per retry


def test_repeated_warnings_of_other_loggers_are_filtered(caplog):
    """uvicorn logs "Exceeded concurrency limit." once per refused request."""
    clock = [0.0]
    noisy = logging.getLogger("test_abuse.noisy")
    noisy.addFilter(RepeatFilter(RateLimitedLog(interval=60, clock=lambda: clock[0])))
    with caplog.at_level(logging.WARNING, logger="test_abuse.noisy"):
        for _ in range(100):
            noisy.warning("Exceeded concurrency limit.")
        clock[0] = 61.0
        noisy.warning("Exceeded concurrency limit.")
    lines = [r.getMessage() for r in caplog.records if r.name == "test_abuse.noisy"]
    assert lines == [
        "Exceeded concurrency limit.",
        "Exceeded concurrency limit. (99 more like it in the last 61 s, not logged)",
    ]


# --- item 9: the key and the Host header ----------------------------------------------


@pytest.mark.parametrize("key", ["clé-secrète", "密钥123", "has space", "tab\tkey"])
def test_a_key_no_client_can_send_is_refused_at_start(key):
    with pytest.raises(ValueError, match="--api_key: the API key holds .*printable ASCII"):
        ServeConfig(api_key=key).check()
    ServeConfig(api_key="sk-Ok_123.~").check()


def test_the_host_header_must_name_this_server(tmp_path):
    fake = Fake()
    client = TestClient(create_app(fake, allowed_hosts=allowed_host_names("", "127.0.0.1")))
    files = {"file": ("a.wav", wav_bytes(tmp_path, 1.0))}
    for host in ("evil.example", "evil.example:5000", "127.0.0.1.evil.example"):
        r = client.post("/v1/audio/transcriptions", files=files, headers={"Host": host})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host", host
        assert client.get("/", headers={"Host": host}).status_code == 400
    assert fake.calls == []
    for host in ("127.0.0.1:5000", "localhost:5000", "[::1]:5000", "10.0.0.7"):
        r = client.post("/v1/audio/transcriptions", files=files, headers={"Host": host})
        assert r.status_code == 200, (host, r.text)
    assert allowed_host_names("*", "127.0.0.1") is None
    assert allowed_host_names("asr.example.com, *.lan", "0.0.0.0") == (
        "localhost",
        "asr.example.com",
        "*.lan",
    )
    client = TestClient(create_app(fake, allowed_hosts=("*.lan",)))
    assert client.get("/health", headers={"Host": "box.lan:5000"}).status_code == 200
    assert client.get("/health", headers={"Host": "lan.evil"}).status_code == 400


def test_a_websocket_from_another_host_is_refused():
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocketDisconnect

    from whisper_finetune.serving.guard import Guard
    from whisper_finetune.serving.queue import WorkQueue

    async def hello(websocket):
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app = Guard(Starlette(routes=[WebSocketRoute("/ws", hello)]), api_key=None,
                max_upload_bytes=1024, queue=WorkQueue(), allowed_hosts=("localhost",))  # fmt: skip
    client = TestClient(app)
    with client.websocket_connect("/ws", headers={"host": "localhost:5000"}) as ws:
        assert ws.receive_text() == "hello"
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/ws", headers={"host": "evil.example"}) as ws,
    ):
        ws.receive_text()
    assert refused.value.code == 1008


@pytest.mark.slow
def test_real_model_transcribes_long_audio_in_pieces(monkeypatch, real_speech, cer):
    """The CTranslate2 path (faster-whisper's lazy segments, piece by piece) on four real
    clips with half-second pauses (34 s) cut into 20 s pieces: times run on across the
    cut, and the text is as good as the same audio decoded without pieces."""
    import json

    from whisper_finetune.data.audio import load_audio
    from whisper_finetune.inference.loader import load_transcriber

    records = [json.loads(line) for line in real_speech.read_text(encoding="utf-8").splitlines()]
    chosen = [records[i] for i in (0, 1, 7, 5)]  # 9.5 + 8.6 + 8.4 + 5.5 s
    pause = np.zeros(RATE // 2, dtype=np.float32)
    audio = np.concatenate(
        [
            part
            for r in chosen
            for part in (load_audio(real_speech.parent / r["audio"]["path"]), pause)
        ]
    )
    reference = "".join(r["sentence"] for r in chosen)
    buffer = io.BytesIO()
    sf.write(buffer, audio, RATE, format="WAV")
    transcriber = load_transcriber("embedded:whisper-base", "ct2", compute_type="int8")
    client = TestClient(create_app(transcriber, DecodeOptions(language="zh")))

    def transcribe() -> dict:
        r = client.post(
            "/v1/audio/transcriptions",
            files={"file": ("four.wav", buffer.getvalue())},
            data={"response_format": "verbose_json"},
        )
        assert r.status_code == 200, r.text
        return r.json()

    whole = transcribe()
    monkeypatch.setattr(decode, "PIECE_SECONDS", 20.0)
    monkeypatch.setattr(decode, "QUIET_SEARCH_SECONDS", 6.0)
    pieced = transcribe()
    starts = [s["start"] for s in pieced["segments"]]
    assert starts == sorted(starts) and pieced["segments"][-1]["end"] <= pieced["duration"] + 0.01
    assert max(starts) >= 18.0  # the second piece's segments, on the file's clock
    assert cer(pieced["text"], reference) <= cer(whole["text"], reference) + 0.05, (
        pieced["text"],
        whole["text"],
    )
