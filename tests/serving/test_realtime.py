"""``/v1/realtime``: OpenAI's Realtime transcription events over a WebSocket.

The fast tests drive the route in-process (Starlette's test client) with the real
Silero VAD on test.wav and a fake transcriber whose text grows with the audio it is
given, so the local agreement and the event order are checked without a model. The
slow test streams test.wav in real time, as 24 kHz PCM16 in 100 ms chunks, to a real
server with the ``websockets`` client, and compares the live transcript with the
transcript of the whole recording.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from whisper_finetune.data.audio import load_audio
from whisper_finetune.data.codec import resample
from whisper_finetune.inference.transcript import DecodeOptions, Segment, Transcript
from whisper_finetune.serving.live import agreed_prefix, completed_text, new_delta
from whisper_finetune.serving.server import create_app

SENTENCE = "近几年不但我用书给女儿压岁也劝说亲朋不要给女儿压岁钱而改送压岁书"
DONE = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"
PARTIAL = "conversation.item.input_audio_transcription.partial"


class Growing:
    """Two characters of :data:`SENTENCE` per second of audio: each decode agrees with
    the one before on everything but what the new audio adds."""

    backend = "fake"

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def transcribe(self, audio, options):
        seconds = len(audio) / 16000
        self.seconds.append(seconds)
        text = SENTENCE[: int(seconds * 2)]
        return Transcript.from_segments([Segment(0.0, seconds, text)], "zh", seconds)


def _pcm24(samples: np.ndarray) -> bytes:
    return (np.clip(resample(samples, 16000, 24000), -1, 1) * 32767).astype("<i2").tobytes()


def _chunks(data: bytes, ms: int = 100, rate: int = 24000):
    size = rate * 2 * ms // 1000
    for i in range(0, len(data), size):
        yield base64.b64encode(data[i : i + size]).decode()


def _events_until(ws, kind: str, count: int = 1) -> list[dict]:
    events = []
    while sum(e["type"] == kind for e in events) < count:
        events.append(ws.receive_json())
    return events


@pytest.fixture(scope="module")
def speech(test_wav) -> bytes:
    """test.wav with 0.5 s of silence before and 1.5 s after, as 24 kHz PCM16."""
    x = load_audio(test_wav)
    return _pcm24(np.concatenate([np.zeros(8000, np.float32), x, np.zeros(24000, np.float32)]))


def test_agreement_helpers():
    assert agreed_prefix("近几年不但", "近几年不但我用") == "近几年不但"
    assert agreed_prefix("近几年", "进几年") == ""
    assert completed_text("近几年", "近几年不但我") == "近几年不但我"
    # the final hypothesis differs inside the committed part: the committed text stays
    assert completed_text("近几年不但", "近几年不单我用书") == "近几年不但我用书"
    assert completed_text("", "你好") == "你好"


def test_agreement_reads_across_scripts():
    """whisper-base writes a growing turn in traditional characters one decode and in
    simplified the next (real-zh-dev's first FLEURS clip at 1.0 s and 1.5 s): the two
    agree, the newer hypothesis's characters are sent, and what was sent stays."""
    assert agreed_prefix("科学家", "科學家表示") == "科學家"
    assert new_delta("", "科學家表示", "科学家表示这种", hold=2) == "科学家"
    # committed in one script, the next agreement in the other: it still extends it
    assert new_delta("科学家", "科學家表示這種", "科學家表示這種動物", hold=2) == "表示"
    # the agreement does not reach past the committed text, or holds only open characters
    assert new_delta("科学家表示", "科學家", "科學家表", hold=0) == ""
    assert new_delta("", "科学家", "科学家表示", hold=3) == ""
    assert new_delta("", "近几年", "进几年", hold=0) == ""
    # a final hypothesis in the other script completes the committed text unchanged
    assert completed_text("科学家", "科學家表示這種動物") == "科学家表示這種動物"
    assert completed_text("科学家表示", "科學家表示這種") == "科学家表示這種"


def test_server_vad_turn_deltas_then_completed(speech):
    fake = Growing()
    client = TestClient(create_app(fake, DecodeOptions(language="zh")), base_url="http://127.0.0.1")
    with client.websocket_connect("/v1/realtime") as ws:
        created = ws.receive_json()
        assert created["type"] == "session.created" and created["event_id"].startswith("event_")
        assert created["session"]["audio"]["input"]["format"]["rate"] == 24000
        ws.send_json({"type": "transcription_session.update", "event_id": "c1",
                      "session": {"input_audio_transcription": {"language": "zh"}}})  # fmt: skip
        assert ws.receive_json()["type"] == "transcription_session.updated"
        for chunk in _chunks(speech):
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        events = _events_until(ws, DONE)
    kinds = [e["type"] for e in events]
    started, stopped, committed = (
        next(e for e in events if e["type"] == f"input_audio_buffer.{k}")
        for k in ("speech_started", "speech_stopped", "committed")
    )
    item = started["item_id"]
    assert stopped["item_id"] == committed["item_id"] == item
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index(
        "input_audio_buffer.speech_stopped") < kinds.index("input_audio_buffer.committed")  # fmt: skip
    # test.wav's speech starts at about 0.5 s of our padding plus its own lead-in
    assert 0 <= started["audio_start_ms"] < 1500 and 8000 < stopped["audio_end_ms"] < 9500
    deltas = [e for e in events if e["type"] == DELTA]
    done = events[-1]
    assert done["item_id"] == item and done["content_index"] == 0
    # partial text came before the turn ended, and the deltas add up to the transcript
    assert kinds.index(DELTA) < kinds.index("input_audio_buffer.speech_stopped")
    assert "".join(d["delta"] for d in deltas) == done["transcript"]
    assert done["transcript"] == SENTENCE[: len(done["transcript"])]
    assert len(done["transcript"]) >= 14  # about 7.5 s of turn, two characters a second
    # each decode was the turn so far, at most one window; silence was never decoded
    assert len(fake.seconds) >= 3 and max(fake.seconds) < 10


def test_partials_show_each_hypothesis_before_it_is_committed(speech):
    """Ours, asked for with ``partials``: after each partial decode, the whole hypothesis
    (beginning with the deltas sent so far) and its tentative rest; the first comes from
    the turn's first decode, before local agreement has committed anything."""
    fake = Growing()
    client = TestClient(create_app(fake, DecodeOptions(language="zh")), base_url="http://127.0.0.1")
    with client.websocket_connect("/v1/realtime") as ws:
        assert ws.receive_json()["session"]["input_audio_transcription"]["partials"] is False
        ws.send_json({"type": "session.update", "session": {"audio": {"input": {
            "transcription": {"language": "zh", "partials": True}}}}})  # fmt: skip
        updated = ws.receive_json()["session"]
        assert updated["audio"]["input"]["transcription"]["partials"] is True
        for chunk in _chunks(speech):
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        events = _events_until(ws, DONE)
    kinds = [e["type"] for e in events]
    partials = [e for e in events if e["type"] == PARTIAL]
    assert len(partials) >= 3
    assert kinds.index(PARTIAL) < kinds.index(DELTA)  # shown before it is committed
    assert kinds.index(PARTIAL) < kinds.index("input_audio_buffer.speech_stopped")
    committed = ""
    for event in events:
        if event["type"] == DELTA:
            committed += event["delta"]
        if event["type"] == PARTIAL:
            assert event["item_id"] == events[-1]["item_id"] and event["content_index"] == 0
            assert event["transcript"] == committed + event["tentative"]
            assert event["transcript"] == SENTENCE[: len(event["transcript"])]
    # each decode heard more: every partial shows more text than the one before
    shown = [len(e["transcript"]) for e in partials]
    assert shown == sorted(set(shown)), shown
    # the first partial was the turn's first decode: text, while nothing was committed
    assert partials[0]["tentative"] == partials[0]["transcript"] != ""


def test_the_commit_point_is_decoded_once(speech):
    """Once the VAD hears silence, the next decode is up to exactly where the turn will be
    committed (silence + 400 ms) and gives the item's final text; no decode runs into the
    silence past it (they did, every 0.5 s, and the commit then needed a decode of its
    own). A later turn's final decode includes the previous turn's audio as context, and
    is done again without it where that left the turn no text."""
    fake = Growing()
    client = TestClient(create_app(fake, DecodeOptions(language="zh")), base_url="http://127.0.0.1")
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": {
            "input_audio_transcription": {"partials": True}}})  # fmt: skip
        ws.receive_json()
        for chunk in _chunks(speech):
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        first = _events_until(ws, DONE)
        turn_one = list(fake.seconds)
        for chunk in _chunks(speech):
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        second = _events_until(ws, DONE)
    seconds = first[-1]["usage"]["seconds"]
    # the last decode of the first turn ended exactly at its commit point, and none past it
    assert turn_one[-1] == pytest.approx(seconds, abs=1e-3), (turn_one, seconds)
    assert max(turn_one) <= seconds + 1e-3 and turn_one.count(turn_one[-1]) == 1
    later, seconds = fake.seconds[len(turn_one) :], second[-1]["usage"]["seconds"]
    # the second turn's final decode included the first turn's audio; the fake's one
    # segment spans both turns and went with the first, so the turn was decoded again
    # on its own rather than left empty
    assert later[-2] > seconds + 5.0 and later[-1] == pytest.approx(seconds, abs=1e-3), later
    assert second[-1]["transcript"] == SENTENCE[: int(seconds * 2)], second[-1]


def test_when_partial_decodes_are_due():
    """The decode schedule (Session.due), on a session's audio and VAD state."""
    from types import SimpleNamespace

    from whisper_finetune.serving.live import Turn
    from whisper_finetune.serving.realtime import Session

    session = Session(SimpleNamespace(defaults=DecodeOptions(language="zh")), None, None)

    def due(seconds: float, turn: Turn, partials: bool = False, silence: float | None = None):
        session.audio = np.zeros(int(seconds * 16000), np.float32)
        session.settings = dataclasses.replace(session.settings, partials=partials)
        session.silence_from = None if silence is None else int(silence * 16000)
        return session.due(turn)

    alone, after = Turn("a", 0), Turn("b", 16000 * 12, context=16000 * 2)
    # OpenAI's events only: the first decode at 1 s of the turn, with the previous turn
    assert due(0.9, alone) is None and due(1.0, alone) == (16000, False)
    assert due(13.0, after) == (16000 * 13, False)
    # partials: at 0.8 s; rough (no previous turn's audio) where there is one to leave out
    assert due(0.8, alone, partials=True) == (12800, False)
    assert due(12.8, after, partials=True) == (16000 * 12 + 12800, True)
    # then every 0.5 s of new audio, never rough
    after.last, after.decoded_at = "x", 12800
    assert due(13.2, after, partials=True) is None
    assert due(13.3, after, partials=True) == (16000 * 13 + 4800, False)
    # in silence: nothing until the commit point (silence + 0.4 s), then exactly that, once
    assert due(14.3, after, partials=True, silence=14.0) is None
    assert due(14.45, after, partials=True, silence=14.0) == (16000 * 14 + 6400, False)
    after.decoded_at = 16000 * 2 + 6400
    assert due(14.45, after, partials=True, silence=14.0) is None
    # without server VAD (the client commits) silence plays no part
    session.settings = dataclasses.replace(session.settings, vad=None)
    session.silence_from = 16000 * 14
    assert session.due(alone) == (session.end(), False)


def test_partials_are_asked_for(speech):
    """OpenAI's clients get OpenAI's events only; ``partials`` must be a boolean."""
    fake = Growing()
    client = TestClient(create_app(fake, DecodeOptions(language="zh")), base_url="http://127.0.0.1")
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "event_id": "u1", "session": {
            "input_audio_transcription": {"partials": "yes"}}})  # fmt: skip
        error = ws.receive_json()["error"]
        assert (error["code"], error["param"], error["event_id"]) == (
            "invalid_value", "session.input_audio_transcription.partials", "u1")  # fmt: skip
        for chunk in _chunks(speech):
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        events = _events_until(ws, DONE)
    assert DELTA in [e["type"] for e in events]
    assert PARTIAL not in [e["type"] for e in events]


def test_manual_commit_16k_and_errors(test_wav):
    fake = Growing()
    client = TestClient(create_app(fake, DecodeOptions(language="zh")), base_url="http://127.0.0.1")
    pcm16 = (load_audio(test_wav)[: 16000 * 3] * 32767).astype("<i2").tobytes()
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}}}})  # fmt: skip
        updated = ws.receive_json()
        assert updated["type"] == "session.updated"
        assert updated["session"]["turn_detection"] is None
        ws.send_json({"type": "input_audio_buffer.commit", "event_id": "e1"})
        error = ws.receive_json()
        assert (
            error["type"] == "error" and error["error"]["code"] == "input_audio_buffer_commit_empty"
        )
        assert (
            error["error"]["type"] == "invalid_request_error" and error["error"]["event_id"] == "e1"
        )
        ws.send_json(
            {"type": "input_audio_buffer.append", "audio": "not base64!", "event_id": "e2"}
        )
        error = ws.receive_json()["error"]
        assert (error["code"], error["param"], error["event_id"]) == (
            "invalid_value",
            "audio",
            "e2",
        )
        ws.send_json({"type": "response.create"})
        assert ws.receive_json()["error"]["code"] == "unknown_event"
        ws.send_text("{not json")
        assert ws.receive_json()["error"]["code"] == "invalid_json"
        ws.send_json({"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}})
        assert ws.receive_json()["error"]["param"] == "session.input_audio_format"
        for chunk in _chunks(pcm16, rate=16000):
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        ws.send_json({"type": "input_audio_buffer.commit"})
        events = _events_until(ws, DONE)
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.speech_started" not in kinds  # no server VAD events
    assert "input_audio_buffer.committed" in kinds
    # 3 s of 16 kHz audio, read as 16 kHz: about 2.5 s of turn after the lead-in
    assert 4 <= len(events[-1]["transcript"]) <= 6, events[-1]


def test_api_key_rule(speech):
    client = TestClient(create_app(Growing(), api_key="k-123"), base_url="http://127.0.0.1")
    with client.websocket_connect("/v1/realtime") as ws:
        error = ws.receive_json()
        assert error["type"] == "error" and error["error"]["code"] == "missing_api_key"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
    with client.websocket_connect("/v1/realtime", headers={"Authorization": "Bearer nope"}) as ws:
        assert ws.receive_json()["error"]["code"] == "invalid_api_key"
    with client.websocket_connect("/v1/realtime", headers={"Authorization": "Bearer k-123"}) as ws:
        assert ws.receive_json()["type"] == "session.created"
    # a browser cannot set headers: OpenAI's key subprotocol
    protocols = ["realtime", "openai-insecure-api-key.k-123"]
    with client.websocket_connect("/v1/realtime", subprotocols=protocols) as ws:
        assert ws.receive_json()["type"] == "session.created"
        assert ws.accepted_subprotocol == "realtime"


@pytest.mark.slow
def test_real_client_streams_test_wav_in_real_time(live_server, test_wav, cer):
    """24 kHz PCM16 in 100 ms chunks at the speed of speech, then a commit."""
    import httpx
    import websockets

    x = load_audio(test_wav)
    data = _pcm24(np.concatenate([np.zeros(8000, np.float32), x, np.zeros(16000, np.float32)]))
    url = live_server.url.replace("http://", "ws://") + "/v1/realtime"

    async def stream() -> list[tuple[float, dict]]:
        received: list[tuple[float, dict]] = []
        async with websockets.connect(url) as ws:
            start = time.monotonic()

            async def read():
                async for message in ws:
                    event = json.loads(message)
                    received.append((time.monotonic() - start, event))
                    done = [e for _, e in received if e["type"] == DONE]
                    # the VAD's item, then the item of the commit (the trailing silence)
                    if len(done) == 2:
                        return

            reader = asyncio.create_task(read())
            await ws.send(json.dumps({"type": "session.update", "session": {
                "input_audio_transcription": {"language": "zh", "partials": True}}}))  # fmt: skip
            for i, chunk in enumerate(_chunks(data)):
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                await asyncio.sleep(max(0.0, start + (i + 1) * 0.1 - time.monotonic()))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await asyncio.wait_for(reader, 120)
        return received

    events = [e for _, e in asyncio.run(stream())]
    done = [e for e in events if e["type"] == DONE]
    assert done[1]["transcript"] == ""  # the silence after the turn: nothing to say
    live = done[0]["transcript"]
    deltas = [
        e["delta"] for e in events if e["type"] == DELTA and e["item_id"] == done[0]["item_id"]
    ]
    assert "".join(deltas) == live
    # the tentative text came while the person spoke, each partial beginning with the
    # deltas sent before it (the real model's hypotheses, decoded every half second)
    item = [e for e in events if e.get("item_id") == done[0]["item_id"]]
    kinds = [e["type"] for e in item]
    assert kinds.index(PARTIAL) < kinds.index("input_audio_buffer.speech_stopped"), kinds
    committed = ""
    for event in item:
        committed += event["delta"] if event["type"] == DELTA else ""
        if event["type"] == PARTIAL:
            assert event["transcript"] == committed + event["tentative"], event
    whole = httpx.post(f"{live_server.url}/v1/audio/transcriptions", timeout=120,
                       files={"file": ("test.wav", test_wav.read_bytes(), "audio/wav")}).json()  # fmt: skip
    assert cer(live) <= cer(whole["text"]) + 0.02, (live, whole["text"])
    assert cer(live) < 0.25, live


def test_silence_costs_no_decoding():
    fake = Growing()
    client = TestClient(create_app(fake, DecodeOptions(language="zh")), base_url="http://127.0.0.1")
    quiet = np.random.default_rng(0).normal(0, 0.002, 16000 * 20).astype(np.float32)  # 20 s
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        for chunk in _chunks(_pcm24(quiet)):
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        ws.send_json({"type": "input_audio_buffer.commit"})
        events = _events_until(ws, DONE)
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.speech_started" not in kinds and DELTA not in kinds
    assert events[-1]["transcript"] == "" and fake.seconds == []  # nothing was decoded


def test_the_uncommitted_buffer_is_bounded_by_max_audio_seconds():
    """HTTP refuses audio past ``--max_audio_seconds`` (413); a realtime client that never
    commits could grow its buffer without end. An append that would take the uncommitted
    buffer past the limit gets an ``error`` naming it and is dropped; what was buffered
    is kept (the committed item lasts exactly the 2 s appended before), the session
    stays open, and after the commit the buffer takes audio again."""
    app = create_app(Growing(), DecodeOptions(language="zh"), max_audio_seconds=2.0)
    client = TestClient(app, base_url="http://127.0.0.1")
    quiet = np.random.default_rng(0).normal(0, 0.002, 16000 * 3)  # no speech: one item
    pcm16 = (quiet * 32767).astype("<i2").tobytes()
    second = 16000 * 2  # bytes of one second at 16 kHz
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}}}})  # fmt: skip
        assert ws.receive_json()["type"] == "session.updated"
        for i in range(2):  # 2.0 s: up to the limit, not past it
            chunk = base64.b64encode(pcm16[i * second : (i + 1) * second]).decode()
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        extra = base64.b64encode(pcm16[2 * second : 2 * second + 3200]).decode()  # 0.1 s
        ws.send_json({"type": "input_audio_buffer.append", "audio": extra, "event_id": "e9"})
        ws.send_json({"type": "input_audio_buffer.commit"})
        error = ws.receive_json()
        assert error["type"] == "error" and error["event_id"].startswith("event_"), error
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["code"] == "audio_too_long"
        assert error["error"]["param"] is None and error["error"]["event_id"] == "e9"
        message = error["error"]["message"]
        assert "2 s" in message and "--max_audio_seconds" in message, message
        assert "dropped" in message and "2.1 s" in message, message
        events = _events_until(ws, DONE)
        assert "error" not in [e["type"] for e in events]
        # after the commit the buffer is empty again: a second of audio is taken
        chunk = base64.b64encode(pcm16[:second]).decode()
        ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        ws.send_json({"type": "input_audio_buffer.commit"})
        later = _events_until(ws, DONE)
    assert "error" not in [e["type"] for e in later]
    # the first item holds the 2 s buffered, not the dropped 0.1 s; the second its 1 s
    assert events[-1]["usage"]["seconds"] == 2.0, events[-1]
    assert later[-1]["usage"]["seconds"] == 1.0, later[-1]


def test_the_buffer_limit_counts_24khz_audio_in_seconds(speech):
    """A single append larger than the limit (24 kHz, server VAD on) is refused whole."""
    client = TestClient(create_app(Growing(), max_audio_seconds=1.0), base_url="http://127.0.0.1")
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "input_audio_buffer.append",
                      "audio": base64.b64encode(speech[: 24000 * 2 * 2]).decode()})  # fmt: skip
        ws.send_json({"type": "input_audio_buffer.clear"})
        error = ws.receive_json()
        assert error["error"]["code"] == "audio_too_long", error
        assert "2.0 s" in error["error"]["message"] and error["error"]["event_id"] is None
        assert ws.receive_json()["type"] == "input_audio_buffer.cleared"
        ws.send_json({"type": "input_audio_buffer.append",
                      "audio": base64.b64encode(speech[: 24000 * 2 // 2]).decode()})  # fmt: skip
        ws.send_json({"type": "input_audio_buffer.clear"})
        assert ws.receive_json()["type"] == "input_audio_buffer.cleared"


def test_a_long_turn_after_another_is_transcribed():
    """A turn is decoded after up to 10 s of the previous turn (context) and at most 28 s
    in all; past that the start was a float and slicing the audio at it failed
    (``TypeError: slice indices must be integers``): the partials of a turn longer than
    18 s after another failed, and the item with them."""
    from whisper_finetune.assets import real_zh_dev_manifest
    from whisper_finetune.data.manifest import read_manifest

    records = read_manifest(real_zh_dev_manifest())[:7]  # seven distinct clips, 53 s
    audio = np.concatenate([load_audio(r.audio_path) for r in records])
    pcm16 = (audio * 32767).astype("<i2").tobytes()
    fake = Growing()
    client = TestClient(create_app(fake, DecodeOptions(language="zh")), base_url="http://127.0.0.1")
    with client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        ws.send_json({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}}}})  # fmt: skip
        assert ws.receive_json()["type"] == "session.updated"
        for chunk in _chunks(pcm16, ms=1000, rate=16000):
            ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        ws.send_json({"type": "input_audio_buffer.commit"})
        events, ends = [], (DONE, "conversation.item.input_audio_transcription.failed")
        while sum(e["type"] in ends for e in events) < 2:  # two items, done or failed
            events.append(ws.receive_json())
    failed = [e for e in events if e["type"] == ends[1]]
    assert not failed, failed
    done = [e for e in events if e["type"] == DONE]
    # the first turn is committed at 28 s; the second, 24 s, decoded with 4 s of context
    assert done[0]["usage"]["seconds"] >= 28.0 and done[1]["usage"]["seconds"] > 18.0, done
    assert max(fake.seconds) <= 28.0 + 1.0, fake.seconds  # no decode past one window
    assert all(e["transcript"] for e in done), done
