"""benchmarks/train_gpu.py runs on the CPU with a tiny shape, so it cannot rot.

The rows run in this process (the driver's subprocess per row is run once, for one row);
the speed-up variants of the plain loop must give the loss of the plain loop.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("train_gpu")


@pytest.fixture(scope="module")
def common(bench, tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("train-gpu")
    train = bench.write_manifest(work, 8)
    return dict(
        model=str(tiny_model_dir),
        train=str(train),
        work=str(work),
        device="cpu",
        batch=2,
        steps=2,
        warmup=1,
        peak_tflops=989.0,
        flops_per_sample=bench.training_flops(tiny_model_dir, 40),
        **bench.manifest_stats(train),
    )


def test_flops_and_data(bench, common, tiny_model_dir):
    # counted FLOPs grow with the label length; the shipped clips are real speech
    assert bench.training_flops(tiny_model_dir, 80) > common["flops_per_sample"] > 0
    assert 8 < bench.label_tokens(tiny_model_dir, Path(common["train"])) < 120
    assert 1.0 < common["audio_s_per_sample"] < 30.0
    assert common["utterances_per_sample"] == 1.0


def test_speedup_variants_keep_the_plain_loop_loss(bench, common, one_torch_thread):
    base = bench.row_plain({**common, "row": "plain"})
    assert base["samples_per_s"] > 0 and base["attention"] == "sdpa"
    assert len(base["losses"]) == 3 and "mfu" not in base  # no MFU off CUDA
    eager = bench.row_plain({**common, "row": "plain", "variant": "eager"})
    assert eager["attention"] == "eager"
    fused = bench.row_plain({**common, "row": "plain", "variant": "fused-adamw"})
    for other in (eager, fused):
        assert other["losses"] == pytest.approx(base["losses"], abs=1e-3)
    # LoRA's B starts at zero: dropout cannot change the first loss, only later ones
    nodrop = bench.row_plain({**common, "row": "plain", "variant": "no-dropout"})
    assert nodrop["losses"][0] == pytest.approx(base["losses"][0], abs=1e-4)
    # bf16 frozen base under bf16 autocast: the loss of fp32 weights under the same autocast
    auto = bench.row_plain({**common, "row": "plain", "cpu_bf16": True})
    half = bench.row_plain({**common, "row": "plain", "cpu_bf16": True, "variant": "bf16-base"})
    assert half["losses"] == pytest.approx(auto["losses"], abs=0.05)
    assert auto["losses"] == pytest.approx(base["losses"], abs=0.1)


def test_recipe_ours_and_the_dataloader(bench, common, one_torch_thread):
    recipe = bench.row_recipe({**common, "row": "recipe"})
    ours = bench.row_ours({**common, "row": "ours"})
    # same model, data, seed and adapter: the same first loss, whoever runs the step
    assert ours["losses"][0] == pytest.approx(recipe["losses"][0], abs=1e-3)
    assert ours["resolved"]["num_workers"] == 0 and ours["resolved"]["precision"] == "fp32"
    assert ours["attention"] == "sdpa"  # the project's model runs SDPA attention
    packed = bench.row_ours({**common, "row": "ours-packed"})
    assert packed["utterances_per_sample"] > 1
    assert packed["utterances_per_s"] > packed["samples_per_s"]
    loader = bench.row_dataloader({**common, "row": "dataloader"})
    assert loader["samples_per_s"] > 0 and "mfu" not in loader


def test_driver_writes_json_and_keeps_failed_rows(bench, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "build_model", lambda shape, folder: tiny_model_dir)
    out = tmp_path / "out"
    argv = ["--out", str(out), "--shapes", "tiny", "--device", "cpu", "--rows", "plain"]
    argv += ["--steps", "1", "--warmup", "1", "--batch", "2", "--work", str(tmp_path / "w")]
    assert bench.main(argv) == 0
    report = json.loads((out / "train_gpu.json").read_text(encoding="utf-8"))
    (row,) = report["rows"]
    assert row["shape"] == "tiny" and row["samples_per_s"] > 0, row
    assert report["environment"]["torch"] and report["data"]["records"] == 2 * (1 + 1 + 2)
    # too few steps to time is an error, not a rate from nothing
    clock = bench.Clock("cpu")
    clock.tick()
    with pytest.raises(RuntimeError, match="only 1 steps timed"):
        clock.samples_per_s(2, warmup=1)
