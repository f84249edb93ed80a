"""The --num_workers default follows from what a GPU consumes and what a worker produces."""

from __future__ import annotations

import math

import pytest

from whisper_finetune.data import workers
from whisper_finetune.training.config import FinetuneConfig


@pytest.mark.parametrize(
    "name, size",
    [
        ("openai/whisper-large-v3", "large"),
        ("openai/whisper-large-v3-turbo", "large"),
        ("openai/whisper-small", "small"),
        ("/models/whisper-medium-zh-lora", "medium"),
        ("embedded:whisper-base", "base"),
        ("/models/my-model", "small"),  # unknown: the small figure
    ],
)
def test_model_size_from_the_name(name, size):
    assert workers.model_size(name) == size


def test_smaller_models_need_more_workers():
    need = {s: workers.workers_needed(s) for s in workers.GPU_SAMPLES_PER_S}
    assert need["tiny"] > need["base"] > need["small"] > need["medium"] >= need["large"] >= 1
    rate = workers.GPU_SAMPLES_PER_S["small"]
    assert need["small"] == math.ceil(rate * workers.HEADROOM / workers.WORKER_SAMPLES_PER_S)


def test_measured_sizes_use_the_measured_rates():
    # issue 23's H100 figures, not an assumed utilisation: the GPU rate of a measured size
    # is its measurement, and an unmeasured size is rated at the next measured one's MFU
    for size, rate in workers.MEASURED_GPU_SAMPLES_PER_S.items():
        assert workers.GPU_SAMPLES_PER_S[size] == pytest.approx(rate)
    assert workers.UTILISATION["base"] == workers.UTILISATION["small"] < 0.10
    assert workers.UTILISATION["medium"] == workers.UTILISATION["large"] < 0.15


def test_default_num_workers(monkeypatch):
    assert workers.default_num_workers("openai/whisper-small", on_cuda=False) == 0
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda _pid: set(range(64)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 8 GPUs: 8 cores each, one for training
    small = workers.default_num_workers("openai/whisper-small", on_cuda=True)
    large = workers.default_num_workers("openai/whisper-large-v3", on_cuda=True)
    assert small == min(workers.workers_needed("small"), 7)
    assert large == min(workers.workers_needed("large"), 7)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")  # never fewer than one worker on a GPU
    assert workers.default_num_workers("openai/whisper-small", on_cuda=True) == 1


def test_finetune_config_uses_it(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda _pid: set(range(32)), raising=False)
    cfg = FinetuneConfig(train_data="t.jsonl", base_model="openai/whisper-large-v3")
    gpu = cfg.resolved(cuda_available=True, bf16_supported=True)
    assert gpu.num_workers == workers.workers_needed("large")
    assert cfg.resolved(cuda_available=False, bf16_supported=False).num_workers == 0
    assert FinetuneConfig(train_data="t", num_workers=3).resolved(True, True).num_workers == 3


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_the_gpu_table_follows_from_the_counted_flops(size):
    flops = workers.lora_training_flops(size)
    assert flops / 1e12 == pytest.approx(workers.TFLOP_PER_SAMPLE[size], rel=0.01)
    assert workers.gpu_samples_per_s(flops, workers.UTILISATION[size]) == pytest.approx(
        workers.GPU_SAMPLES_PER_S[size], rel=0.01
    )
