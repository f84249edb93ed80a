"""The routes against a fake transcriber (no model): shapes, options, early refusals."""

from __future__ import annotations

import threading

import numpy as np
from fastapi.testclient import TestClient

from whisper_finetune.data.audio import write_wav
from whisper_finetune.inference.transcript import Segment, Transcript
from whisper_finetune.serving.server import create_app


class Fake:
    backend = "fake"

    def __init__(self):
        self.calls = []

    def transcribe(self, audio, options):
        self.calls.append(options)
        return Transcript.from_segments(
            (Segment(0.0, 1.0, "近幾年，"), Segment(1.0, 2.0, "不但我。")),
            options.language or "zh",
            len(audio) / 16000,
        )


def _wav(tmp_path):
    path = tmp_path / "a.wav"
    write_wav(path, (0.1 * np.sin(np.arange(32000) * 0.05)).astype(np.float32))
    return {"file": ("a.wav", path.read_bytes(), "audio/wav")}


def test_openai_shapes_and_options(tmp_path):
    fake = Fake()
    client = TestClient(create_app(fake, model_name="fake-model"))
    assert client.get("/v1/models").json()["data"][0]["id"] == "fake-model"
    r = client.post(
        "/v1/audio/transcriptions",
        files=_wav(tmp_path),
        data={
            "response_format": "verbose_json",
            "language": "Chinese",
            "prompt": "以下是普通话的句子。",
            "temperature": "0.4",
            "to_simple": "true",
            "remove_pun": "true",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["language"] == "chinese" and body["duration"] == 2.0 and body["text"] == "近几年不但我"
    )
    assert [(s["id"], s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        (0, 0.0, 1.0, "近几年"),
        (1, 1.0, 2.0, "不但我"),
    ]
    options = fake.calls[-1]
    assert (options.language, options.initial_prompt, options.temperature) == (
        "zh",
        "以下是普通话的句子。",
        0.4,
    )
    r = client.post(
        "/v1/audio/translations", files=_wav(tmp_path), data={"response_format": "text"}
    )
    assert r.status_code == 200 and r.text == "近幾年，不但我。\n"
    assert fake.calls[-1].task == "translate"


def test_recognition_shape_and_errors(tmp_path):
    client = TestClient(create_app(Fake()))
    files = {"audio": _wav(tmp_path)["file"]}
    r = client.post("/recognition", files=files, data={"to_simple": "1", "remove_pun": "0"})
    assert r.json() == {
        "code": 0,
        "msg": "success",
        "results": [
            {"start": 0.0, "end": 1.0, "text": "近几年，"},
            {"start": 1.0, "end": 2.0, "text": "不但我。"},
        ],
    }
    r = client.post("/recognition", files=files, data={"language": "klingon"})
    assert r.status_code == 422 and r.json()["code"] == 1 and "klingon" in r.json()["msg"]
    r = client.post("/recognition", data={"language": "zh"})
    assert r.status_code == 400 and r.json()["code"] == 1


def test_key_and_full_queue_are_refused_before_the_body_is_parsed(tmp_path):
    app = create_app(Fake(), api_key="k", max_queue=0)
    client = TestClient(app)
    assert client.get("/health").status_code == 200
    assert client.get("/").status_code == 200
    r = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers={"Authorization": "Bearer k"}).status_code == 200
    queue = app.state.server.queue
    release = threading.Event()
    queue.submit(lambda cancel: release.wait(60))  # the only slot is taken
    try:
        r = client.post(
            "/v1/audio/transcriptions", files=_wav(tmp_path), headers={"Authorization": "Bearer k"}
        )
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "queue_full"
    finally:
        release.set()


def test_transformers_backend_streams_at_the_end(tmp_path, tiny_model_dir, one_torch_thread):
    """A backend without ``stream`` (transformers) still answers every mode; its segments
    are sent when the whole transcription is done. Word timing is ct2 only: a 422."""
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions

    transcriber = load_transcriber(tiny_model_dir, "transformers")
    client = TestClient(create_app(transcriber, DecodeOptions(language="zh", max_new_tokens=8)))
    r = client.post("/v1/audio/transcriptions", files=_wav(tmp_path), data={"stream": "true"})
    assert r.status_code == 200
    events = [line for line in r.text.split("\n\n") if line]
    assert events[-1].startswith('data: {"type": "transcript.text.done"')
    r = client.post(
        "/v1/audio/transcriptions", files=_wav(tmp_path), data={"response_format": "verbose_json"}
    )
    assert r.status_code == 200 and r.json()["duration"] == 2.0
    r = client.post(
        "/v1/audio/transcriptions",
        files=_wav(tmp_path),
        data={"response_format": "verbose_json", "timestamp_granularities[]": "word"},
    )
    assert r.status_code == 422 and r.json()["error"]["param"] == "timestamp_granularities[]"
