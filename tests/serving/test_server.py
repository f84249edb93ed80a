"""The HTTP API, against a fake transcriber (no model needed) and once against a real one."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from whisper_finetune.data.audio import write_wav  # noqa: E402
from whisper_finetune.inference.transcript import Segment, Transcript  # noqa: E402
from whisper_finetune.serving.server import create_app  # noqa: E402


class FakeTranscriber:
    def __init__(self):
        self.calls = []

    def transcribe(self, audio, options):
        self.calls.append((len(audio), options))
        return Transcript.from_segments(
            (Segment(0.0, 1.0, "近幾年，"), Segment(1.0, 2.0, "不但我。")),
            options.language or "zh",
            len(audio) / 16000,
        )


def _wav_bytes(tmp_path, seconds=2.0):
    path = tmp_path / "a.wav"
    write_wav(path, (0.1 * np.sin(np.arange(int(16000 * seconds)) * 0.05)).astype(np.float32))
    return path.read_bytes()


def test_transcribe_json_and_options(tmp_path):
    fake = FakeTranscriber()
    client = TestClient(create_app(fake, model_name="fake", backend="fake"))
    assert client.get("/health").json()["status"] == "ok"
    r = client.post(
        "/v1/transcribe",
        files={"audio": ("a.wav", _wav_bytes(tmp_path), "audio/wav")},
        data={"language": "zh", "beam_size": "3", "remove_pun": "true"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"language", "duration", "results", "text"}
    assert body["text"] == "近几年不但我"  # simplified (default) and punctuation removed
    assert body["results"][0] == {"start": 0.0, "end": 1.0, "text": "近几年"}
    n, options = fake.calls[0]
    assert n == 32000 and options.beam_size == 3 and options.language == "zh"


def test_bad_upload_and_formats(tmp_path):
    client = TestClient(create_app(FakeTranscriber(), max_upload_bytes=1000))
    r = client.post(
        "/v1/transcribe", files={"audio": ("big.wav", _wav_bytes(tmp_path), "audio/wav")}
    )
    assert r.status_code == 413
    client = TestClient(create_app(FakeTranscriber()))
    r = client.post("/recognition", files={"audio": ("junk.wav", b"not audio at all", "audio/wav")})
    assert r.status_code == 400 and "junk.wav" in r.json()["detail"]
    r = client.post(
        "/v1/transcribe",
        files={"audio": ("a.wav", _wav_bytes(tmp_path), "audio/wav")},
        data={"output_format": "srt"},
    )
    assert r.status_code == 200 and "00:00:00,000 --> 00:00:01,000" in r.text
    r = client.post(
        "/v1/transcribe",
        files={"audio": ("a.wav", _wav_bytes(tmp_path), "audio/wav")},
        data={"task": "dance"},
    )
    assert r.status_code == 422


@pytest.mark.slow
def test_real_model_over_http(test_wav, test_reference):
    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.text import normalize_text

    transcriber = load_transcriber("embedded:whisper-base", "ct2", compute_type="int8")
    client = TestClient(create_app(transcriber, DecodeOptions(language="zh")))
    r = client.post(
        "/v1/transcribe",
        files={"audio": ("test.wav", io.BytesIO(test_wav.read_bytes()), "audio/wav")},
    )
    assert r.status_code == 200, r.text
    cer = score([normalize_text(test_reference)], [normalize_text(r.json()["text"])], "cer")
    assert cer <= 0.15
