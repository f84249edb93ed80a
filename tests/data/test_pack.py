"""Packing short utterances into <=30 s windows."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_finetune.data.audio import SAMPLE_RATE, load_audio, write_wav
from whisper_finetune.data.manifest import Record, read_manifest, write_manifest
from whisper_finetune.data.recipes.pack import PackConfig, pack_manifest


def _corpus(tmp_path, durations, texts, languages=None):
    records = []
    for i, (d, t) in enumerate(zip(durations, texts, strict=True)):
        path = tmp_path / f"u{i}.wav"
        write_wav(path, np.full(int(d * SAMPLE_RATE), 0.1 * (i + 1), np.float32))
        lang = languages[i] if languages else "zh"
        records.append(Record(str(path), t, d, language=lang))
    manifest = tmp_path / "in.jsonl"
    write_manifest(records, manifest)
    return manifest


def test_windows_hold_texts_in_order_with_timestamps(tmp_path):
    texts = ["你好。", "今天天气很好", "", "hello", "world", "再见"]
    manifest = _corpus(tmp_path, [4, 5, 2, 3, 6, 29.9], texts)
    result = pack_manifest(
        PackConfig(
            str(manifest), str(tmp_path / "out.jsonl"), max_duration=12, gap=0.5, shuffle=False
        )
    )
    out = read_manifest(result.output)
    # the no-speech clip and the 29.9 s utterance stay as they are
    assert result.n_unpacked == 2
    assert sorted(r.sentence for r in out if not r.sentences) == ["", "再见"]
    windows = [r for r in out if r.sentences]
    assert [r.sentence for r in windows] == ["你好。今天天气很好", "hello world"]
    first = windows[0]
    assert [s.text for s in first.sentences] == ["你好。", "今天天气很好"]
    assert first.sentences[1].start == pytest.approx(4.5)
    assert first.duration == pytest.approx(9.5)
    samples = load_audio(first.audio_path)
    assert len(samples) / SAMPLE_RATE == pytest.approx(9.5, abs=0.01)
    # the gap is silent and the second utterance starts after it
    assert np.allclose(samples[int(4.1 * SAMPLE_RATE) : int(4.4 * SAMPLE_RATE)], 0, atol=1e-4)
    assert samples[int(4.6 * SAMPLE_RATE)] == pytest.approx(0.2, abs=1e-3)
    assert all(r.duration <= 12 for r in windows)


def test_languages_are_never_mixed_and_packing_is_deterministic(tmp_path):
    manifest = _corpus(tmp_path, [2] * 6, list("一二三四五六"), ["zh", "en"] * 3)
    a = pack_manifest(PackConfig(str(manifest), str(tmp_path / "a.jsonl"), seed=3))
    b = pack_manifest(PackConfig(str(manifest), str(tmp_path / "b.jsonl"), seed=3))
    ra, rb = read_manifest(a.output), read_manifest(b.output)
    assert [r.sentence for r in ra] == [r.sentence for r in rb]
    assert {r.language for r in ra} == {"zh", "en"}
    for r in ra:
        assert len(r.sentence) == 3  # three 2 s utterances of one language per window


def test_bad_config_and_bad_audio(tmp_path):
    with pytest.raises(ValueError, match="max_duration"):
        PackConfig("a", "b", max_duration=31)
    manifest = tmp_path / "bad.jsonl"
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    write_manifest([Record(str(tmp_path / "broken.wav"), "字", 1.0)], manifest)
    with pytest.raises(ValueError, match="broken.wav"):
        pack_manifest(PackConfig(str(manifest), str(tmp_path / "out.jsonl")))


def test_a_window_carries_its_first_utterances_prompt(tmp_path):
    """The text before a window is the text before its first utterance: its ``prompt``."""
    manifest = _corpus(tmp_path, [3, 3, 3], ["一", "二", "三"])
    records = [
        r if i else Record(r.audio_path, r.sentence, r.duration, language="zh", prompt="会议")
        for i, r in enumerate(read_manifest(manifest))
    ]
    write_manifest(records, manifest)
    result = pack_manifest(
        PackConfig(str(manifest), str(tmp_path / "out.jsonl"), max_duration=30, shuffle=False)
    )
    [window] = read_manifest(result.output)
    assert window.sentence == "一二三" and window.prompt == "会议"
