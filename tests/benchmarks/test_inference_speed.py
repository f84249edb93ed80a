"""benchmarks/inference_speed.py's long clip is distinct speech, never a repetition."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("inference_speed")


@pytest.fixture(scope="module")
def records():
    from whisper_finetune.assets import real_speech_manifest, real_zh_dev_manifest
    from whisper_finetune.data.manifest import read_manifest

    return [*read_manifest(real_zh_dev_manifest()), *read_manifest(real_speech_manifest())]


def test_the_long_clip_is_the_48_shipped_clips_once(bench, records):
    audio, reference = bench.long_clip()
    # 48 recordings (two of FLEURS read the same sentence, by different speakers)
    assert len(records) == 48 and len({str(r.audio_path) for r in records}) == 48
    assert reference == "".join(r.sentence for r in records)  # each once, in order
    seconds = audio.size / 16000
    expected = sum(r.duration for r in records) + 48 * 0.5  # the clips and their pauses
    assert abs(seconds - expected) < 1.0 and 400 < seconds < 440, seconds


def test_long_seconds_takes_the_first_clips_that_reach_it(bench, records):
    audio, reference = bench.long_clip(60)
    seconds = audio.size / 16000
    assert 60 <= seconds < 60 + 12.5, seconds  # at most one clip (and its pause) past it
    n = next(i for i in range(1, 49) if "".join(r.sentence for r in records[:i]) == reference)
    assert reference == "".join(r.sentence for r in records[:n]) and n < 48


def test_long_seconds_past_the_clips_is_refused(bench, monkeypatch, capsys):
    with pytest.raises(
        ValueError, match=r"--long_seconds 500: the 48 shipped clips last 41\d\.\d s"
    ):
        bench.long_clip(500)
    monkeypatch.setattr(sys, "argv", ["inference_speed.py", "--sets", "long", "--long_seconds=500"])
    with pytest.raises(SystemExit) as exit_:
        bench.main()  # refused before any model is prepared or any worker starts
    assert exit_.value.code == 2
    assert "none is repeated" in capsys.readouterr().err
