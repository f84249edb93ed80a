"""A real server process with the embedded whisper-base, spoken to by curl-like requests
and by the official ``openai`` client, unchanged."""

from __future__ import annotations

import difflib
import json
import re
import warnings

import httpx
import openai  # the dev extra; a missing client is a failure, not a skip
import pytest

pytestmark = pytest.mark.slow


def _post(server, path="/v1/audio/transcriptions", files=None, data=None, **kw):
    return httpx.post(
        server.url + path, files=files, data=data, headers=server.headers(), timeout=300, **kw
    )


def _wav(test_wav, name="test.wav"):
    return {"file": (name, test_wav.read_bytes(), "audio/wav")}


def test_models_and_health(live_server):
    health = live_server.health()
    assert health["status"] == "ok" and health["backend"] == "ct2"
    assert health["queue"]["workers"] == 1
    client = openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0)
    ids = [m.id for m in client.models.list().data]
    assert ids == ["embedded:whisper-base"]


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_every_response_format(live_server, test_wav, cer, fmt):
    r = _post(
        live_server, files=_wav(test_wav), data={"model": "whisper-1", "response_format": fmt}
    )
    assert r.status_code == 200, r.text
    if fmt == "json":
        body = r.json()
        assert body["usage"] == {"type": "duration", "seconds": 9}
        text = body["text"]
    elif fmt == "verbose_json":
        body = r.json()
        assert body["task"] == "transcribe" and body["language"] == "chinese"
        assert body["duration"] == pytest.approx(8.39, abs=0.01)
        seg = body["segments"][0]
        assert {
            "id",
            "seek",
            "start",
            "end",
            "text",
            "tokens",
            "temperature",
            "avg_logprob",
            "compression_ratio",
            "no_speech_prob",
        } <= set(seg)
        assert 0 <= seg["start"] < seg["end"] <= 8.39 and seg["tokens"]
        assert "words" not in body
        text = body["text"]
    elif fmt == "text":
        assert r.headers["content-type"].startswith("text/plain")
        text = r.text
    else:
        stamp = r"\d\d:\d\d:\d\d[,.]\d\d\d --> \d\d:\d\d:\d\d[,.]\d\d\d"
        assert re.search(stamp, r.text)
        if fmt == "vtt":
            assert r.text.startswith("WEBVTT\n\n") and "," not in r.text.split("\n")[2]
        else:
            assert r.text.startswith("1\n")
        text = "".join(
            line for line in r.text.splitlines() if not re.search(r"-->|^\d+$|^WEBVTT", line)
        )
    assert cer(text) <= 0.15, text


def test_word_timestamps_in_verbose_json(live_server, test_wav, cer):
    client = openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0)
    with test_wav.open("rb") as f:
        result = client.audio.transcriptions.create(
            file=f,
            model="whisper-1",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert isinstance(result, openai.types.audio.TranscriptionVerbose)
    assert result.segments and result.words and len(result.words) >= 10
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in result.words)
    assert cer("".join(w.word for w in result.words)) <= 0.15


def test_openai_client_without_key(live_server, test_wav, cer):
    client = openai.OpenAI(base_url=live_server.url + "/v1", api_key="anything", max_retries=0)
    with test_wav.open("rb") as f:
        result = client.audio.transcriptions.create(file=f, model="whisper-1", language="zh")
    assert isinstance(result, openai.types.audio.Transcription)
    assert cer(result.text) <= 0.15, result.text
    with test_wav.open("rb") as f:
        srt = client.audio.transcriptions.create(file=f, model="whisper-1", response_format="srt")
    assert isinstance(srt, str) and "-->" in srt


def test_openai_client_with_key(keyed_server, test_wav, cer):
    base = keyed_server.url + "/v1"
    client = openai.OpenAI(base_url=base, api_key=keyed_server.api_key, max_retries=0)
    with test_wav.open("rb") as f:
        result = client.audio.transcriptions.create(file=f, model="whisper-1")
    assert cer(result.text) <= 0.15, result.text
    wrong = openai.OpenAI(base_url=base, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info, test_wav.open("rb") as f:
        wrong.audio.transcriptions.create(file=f, model="whisper-1")
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"
    r = httpx.post(base + "/audio/transcriptions", files=_wav(test_wav), timeout=60)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(keyed_server.url + "/health", timeout=10).status_code == 200  # open


@pytest.mark.xfail(
    strict=False,
    reason="known issue: robust decoding's fallback samples, and CTranslate2 seeds its "
    "sampler once per worker thread (a thread_local generator), not per call, so --seed "
    "does not make a call repeatable; whisper-base's greedy translation of test.wav fails "
    "Whisper's log-prob check and a sampled try in Chinese sometimes scores best",
)
def test_translation_gives_english(live_server, test_wav):
    client = openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0)
    with test_wav.open("rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the client's note on the endpoint
        result = client.audio.translations.create(file=f, model="whisper-1")
    letters = [c for c in result.text if c.isalpha()]
    assert len(letters) > 20 and all(c.isascii() for c in letters), result.text


def _found(hypothesis: str, reference: str) -> float:
    """The share of ``hypothesis``'s characters that align with ``reference`` (difflib;
    both normalized): how much of a segment's text is speech at its place in the file."""
    from whisper_finetune.text import normalize_text

    hyp, ref = normalize_text(hypothesis), normalize_text(reference)
    matcher = difflib.SequenceMatcher(None, hyp, ref, autojunk=False)
    return sum(b.size for b in matcher.get_matching_blocks()) / max(len(hyp), 1)


def test_streaming_sends_segments_as_they_are_decoded(live_server, long_audio, cer):
    """66 s of eight distinct real recordings (the ``long_audio`` fixture), streamed."""
    long_wav, clips = long_audio["long"]
    client = openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0)
    events = []
    with long_wav.open("rb") as f:
        stream = client.audio.transcriptions.create(
            file=f, model="whisper-1", stream=True, extra_body={"to_simple": True}
        )
        for event in stream:
            events.append(event)
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done"
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    # 66 s of audio in three 30 s windows: several segments, sent one event each
    assert len(deltas) >= 3 and kinds[: len(deltas)] == ["transcript.text.delta"] * len(deltas)
    done = events[-1]
    assert "".join(e.delta for e in deltas) == done.text
    times = [(e.segment["start"], e.segment["end"]) for e in deltas]
    assert times == sorted(times) and times[-1][1] > clips[-2].end  # the last clip is heard
    # the whole text is the eight sentences (whisper-base int8: CER 0.083 on 2026-12-06;
    # the margin is wide for AMD and Intel CPUs)
    reference = "".join(c.sentence for c in clips)
    assert cer(done.text, reference) <= 0.25, (cer(done.text, reference), done.text)
    # every segment is the speech at its time: most of its text is in the clips it
    # overlaps (0.75 to 1.0 of it, 2026-12-06)
    for e in deltas:
        start, end = e.segment["start"] - 1.0, e.segment["end"] + 1.0
        heard = "".join(c.sentence for c in clips if c.start < end and c.end > start)
        assert _found(e.segment["text"], heard) >= 0.5, (e.segment, heard)
    assert done.text == done.text.replace("幾", "几")  # to_simple applied


def test_streaming_raw_sse_format(live_server, test_wav):
    with httpx.stream(
        "POST",
        live_server.url + "/v1/audio/transcriptions",
        files=_wav(test_wav),
        data={"stream": "true", "response_format": "text"},
        timeout=300,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    blocks = [b for b in body.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    payloads = [json.loads(b[len("data: ") :]) for b in blocks]
    assert payloads[-1]["type"] == "transcript.text.done"


def test_legacy_endpoints(live_server, test_wav, cer):
    r = _post(
        live_server,
        "/recognition",
        files={"audio": ("test.wav", test_wav.read_bytes())},
        data={"to_simple": "1", "remove_pun": "1"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0 and body["msg"] == "success"
    assert set(body["results"][0]) == {"start", "end", "text"}
    text = "".join(s["text"] for s in body["results"])
    assert cer(text) <= 0.15 and "，" not in text and "," not in text
    r = _post(live_server, "/v1/transcribe", files={"audio": ("test.wav", test_wav.read_bytes())})
    assert r.status_code == 200
    assert set(r.json()) == {"language", "duration", "results", "text"}
    assert cer(r.json()["text"]) <= 0.15
    r = _post(live_server, "/recognition", files={"audio": ("x.wav", b"not audio")})
    assert r.status_code == 400
    assert r.json()["code"] == 1 and "x.wav" in r.json()["msg"]
