"""The package's 48 real clips as one guard set, with a source kind per clip."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from whisper_finetune.evaluation.realspeech import clip_kinds, per_kind, write_real_manifest


def test_the_real_set_joins_all_48_clips_with_kinds_and_attribution(tmp_path):
    path = write_real_manifest(tmp_path / "real.jsonl")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 48
    assert all(line["license"] and line["source"] for line in lines)  # attribution travels
    kinds = clip_kinds(path)
    assert len(kinds) == 48 and all(p.startswith("/") for p in kinds)
    counts = {k: list(kinds.values()).count(k) for k in set(kinds.values())}
    assert counts == {"read": 41, "spontaneous": 3, "broadcast": 2, "expressive": 1, "whispered": 1}


def test_a_clip_listed_twice_is_refused(tmp_path):
    from whisper_finetune.assets import real_speech_manifest

    with pytest.raises(ValueError, match="already in the set"):
        write_real_manifest(tmp_path / "x.jsonl", [real_speech_manifest(), real_speech_manifest()])


def test_per_kind_sums_errors_and_refuses_foreign_clips(tmp_path):
    path = write_real_manifest(tmp_path / "real.jsonl")
    kinds = clip_kinds(path)
    audio = list(kinds)
    spont = [a for a in audio if kinds[a] == "spontaneous"]
    read = [a for a in audio if kinds[a] == "read"][:2]
    utts = [SimpleNamespace(audio=a, errors=2, ref_units=10) for a in spont + read]
    rows = per_kind(utts, kinds)
    assert rows["spontaneous"] == {"clips": 3, "errors": 6, "ref_units": 30, "cer": 0.2}
    assert rows["read"]["clips"] == 2
    with pytest.raises(KeyError, match="not in the set"):
        per_kind([{"audio": "/elsewhere.wav", "errors": 1, "ref_units": 1}], kinds)


def test_kinds_of_a_json_list_manifest():
    from whisper_finetune.assets import test_wav_manifest

    kinds = clip_kinds(test_wav_manifest())
    assert list(kinds.values()) == ["read"] and next(iter(kinds)).endswith("test.wav")
