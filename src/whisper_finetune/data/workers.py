"""How many dataloader workers keep a GPU busy: the default of ``--num_workers``.

- **What a GPU consumes, measured.** LoRA training (r=32 alpha=64 on q, k, v, out, fc1,
  fc2; batch 16; bf16; 30 s windows) of whisper-small and whisper-large-v3 shapes on one
  H100 80 GB, with batches already on the GPU (the model's own speed, no data waits):
  73.5 and 19.6 samples/s. Measured 2026-12-05 with transformers 5.25, peft 0.21.2 and
  accelerate 1.16 (issue 23; ``benchmarks/train_gpu.py``'s ``plain`` row measures it).
  That is 7.1 % and 12.0 % of the H100's dense bf16 peak (989 TFLOP/s) at the training
  FLOPs per sample counted with ``torch.utils.flop_counter`` on each model built on the
  meta device (``lora_training_flops``; 64 label tokens). A size not measured takes the
  utilisation of the measured size next above it (tiny, base: small's; medium:
  large-v3's), which overstates its rate, never understates it.
- **Headroom.** Workers are sized for twice the measured rate
  (:data:`HEADROOM`): the faster training paths issue 23 asks for must not be starved by
  a default sized for today's speed. Until then the extra workers wait on a full queue.
- **What one worker produces.** Samples per CPU-second of :class:`WhisperDataset` in one
  process (decode, speed and volume augmentation, log-mel), measured on the development
  machine's EPYC cores by ``benchmarks/data_scale.py``: about 100 for 5 s wav clips and 30
  for 10 s slices of an hour-long opus file (WenetSpeech-like). The default takes the
  slower figure, so that compressed long-file corpora keep the GPU fed too.

Workers needed = GPU samples/s x headroom / worker samples/s, rounded up, and never more
than the cores a GPU's process can have (cores per local GPU, less one for the training
loop). On one H100: whisper-small 5 workers, large-v3 2 (before this, an assumed 40 %
utilisation gave 416 and 66 samples/s, 4-6x what was measured, and 14 and 3 workers).
"""

from __future__ import annotations

import math
import os
import re


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# training TFLOP per sample (forward and backward) of LoRA r=32, 30 s input, 64 label tokens:
# counted by lora_training_flops (torch.utils.flop_counter on the meta device)
TFLOP_PER_SAMPLE = {
    "tiny": 0.111,
    "base": 0.252,
    "small": 0.952,
    "medium": 3.074,
    "large": 6.037,  # large-v3; turbo's encoder, the bulk of the cost, is the same
}
# samples/s measured on one H100 80 GB, 2026-12-05 (issue 23): LoRA r=32 alpha=64, batch
# 16, bf16, batches already on the GPU; transformers 5.25, peft 0.21.2
MEASURED_GPU_SAMPLES_PER_S = {"small": 73.5, "large": 19.6}
GPU_BF16_PEAK_TFLOPS = 989.0  # H100/H200 SXM, dense
# the fraction of that peak the measurement reached; unmeasured sizes take the next
# measured size above them (see the module docstring)
_MEASURED_UTILISATION = {
    s: r * TFLOP_PER_SAMPLE[s] / GPU_BF16_PEAK_TFLOPS for s, r in MEASURED_GPU_SAMPLES_PER_S.items()
}
UTILISATION = {
    "tiny": _MEASURED_UTILISATION["small"],
    "base": _MEASURED_UTILISATION["small"],
    "small": _MEASURED_UTILISATION["small"],
    "medium": _MEASURED_UTILISATION["large"],
    "large": _MEASURED_UTILISATION["large"],
}
# samples/s of LoRA training at batch 16 on one H100: measured, or counted FLOPs at the
# utilisation above
GPU_SAMPLES_PER_S = {
    s: GPU_BF16_PEAK_TFLOPS * UTILISATION[s] / TFLOP_PER_SAMPLE[s] for s in TFLOP_PER_SAMPLE
}
# workers are sized for this multiple of the measured rate (see the module docstring)
HEADROOM = 2.0
# (d_model, encoder/decoder layers, heads, ffn, mel bins, vocabulary) of OpenAI's checkpoints
WHISPER_DIMS = {
    "tiny": (384, 4, 6, 1536, 80, 51865),
    "base": (512, 6, 8, 2048, 80, 51865),
    "small": (768, 12, 12, 3072, 80, 51865),
    "medium": (1024, 24, 16, 4096, 80, 51865),
    "large": (1280, 32, 20, 5120, 128, 51866),  # large-v3
}
LABEL_TOKENS = 64
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
# samples per CPU-second one dataloader worker produces (decode, augmentation, log-mel) for
# the slowest input measured: 10 s slices of a 60 min opus file (5 s wavs: about 100)
WORKER_SAMPLES_PER_S = 30.0
_SIZES = ("tiny", "base", "small", "medium", "large")


def lora_training_flops(size: str, label_tokens: int = LABEL_TOKENS, rank: int = 32) -> float:
    """FLOPs of one LoRA training sample (forward and backward), counted by torch on a
    model built on the meta device (no weights, no compute)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    d, layers, heads, ffn, mels, vocab = WHISPER_DIMS[size]
    config = WhisperConfig(
        d_model=d,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        num_mel_bins=mels,
        vocab_size=vocab,
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(LORA_TARGETS))
    model = get_peft_model(model, lora)
    model.train()
    features = torch.zeros(1, mels, 3000, device="meta")
    labels = torch.zeros(1, label_tokens, dtype=torch.long, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        model(input_features=features, labels=labels).loss.backward()
    return float(counter.get_total_flops())


def gpu_samples_per_s(
    flops_per_sample: float,
    utilisation: float,
    peak_tflops: float = GPU_BF16_PEAK_TFLOPS,
) -> float:
    """Samples a second a GPU trains at ``utilisation`` of its peak."""
    return peak_tflops * 1e12 * utilisation / flops_per_sample


def model_size(name: str) -> str:
    """``openai/whisper-large-v3`` -> ``large``; unknown names count as ``small``."""
    found = re.findall(r"(?<![a-z])(tiny|base|small|medium|large|turbo)", str(name).lower())
    size = found[-1] if found else "small"
    return "large" if size == "turbo" else size


def workers_needed(model: str, gpu_samples_per_s: float | None = None) -> int:
    """Dataloader workers that keep one GPU fed when fine-tuning ``model`` with LoRA."""
    rate = gpu_samples_per_s or GPU_SAMPLES_PER_S[model_size(model)]
    return max(1, math.ceil(rate * HEADROOM / WORKER_SAMPLES_PER_S))


def default_num_workers(model: str, on_cuda: bool) -> int:
    """The ``--num_workers`` default: 0 on CPU (workers would compete with training for
    the same cores); on a GPU, the workers it needs, capped by the cores per local GPU."""
    if not on_cuda:
        return 0
    gpus = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
    if gpus <= 0:
        try:
            import torch

            gpus = max(1, torch.cuda.device_count())
        except (ImportError, RuntimeError):
            gpus = 1
    return max(1, min(workers_needed(model), available_cpus() // gpus - 1))
