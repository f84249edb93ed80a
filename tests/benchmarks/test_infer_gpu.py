"""benchmarks/infer_gpu.py runs on the CPU with the tiny model, so it cannot rot."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(benchmark_script):
    sys.path.insert(0, str(REPO / "benchmarks"))
    return benchmark_script("infer_gpu")


def test_every_config_times_both_sets(bench, tiny_model_dir, tmp_path, one_torch_thread):
    from whisper_finetune.models.convert import convert_to_ct2

    ct2 = convert_to_ct2(tiny_model_dir, tmp_path / "ct2", quantization="float16")
    common = dict(model=str(tiny_model_dir), ct2=str(ct2), device="cpu", long_seconds=35.0)
    common.update(tokens_per_s=2.0, batch=2)
    for config in ("ct2 int8_float16", "transformers fp16"):
        out = bench.worker({**common, "config": config})
        assert out["test.wav"]["audio_s"] == pytest.approx(8.4, abs=0.2)
        assert out["long"]["audio_s"] >= 35.0
        assert out["long"]["rtf"] > 0 and out["long"]["batched_audio_s_per_s"] > 0


def test_the_long_set_is_cut_into_windows(bench):
    sets = bench.clip_sets(65.0)
    parts = bench.windows(sets["long"])
    assert len(parts) == -(-len(sets["long"]) // (30 * 16000))
    assert all(len(p) <= 30 * 16000 for p in parts)
