"""Synthetic clips and manifests for the data, training and merge tests (numpy only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from whisper_finetune.data.audio import SAMPLE_RATE, write_wav

# (text, seconds, language); "" is a no-speech clip
CLIPS = (
    ("你好世界", 1.5, None),
    ("今天天气很好", 2.0, None),
    ("我们去学校吧", 2.5, "zh"),
    ("", 1.0, None),
    ("hello world", 1.5, "en"),
    ("谢谢你的帮助", 3.0, None),
)


def tone(seconds: float, freq: float, seed: int = 0) -> np.ndarray:
    """A sine with a little noise, float32 at 16 kHz."""
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * noise).astype(np.float32)


def write_manifest(
    folder: Path, clips=CLIPS, name: str = "train.jsonl", extra: list[dict] | None = None
) -> Path:
    """Write one wav per clip and a JSON Lines manifest with timestamps (``sentences``)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (text, seconds, language) in enumerate(clips):
        wav = folder / f"clip{i}.wav"
        if not wav.exists():
            write_wav(wav, tone(seconds, 220.0 + 70 * i, seed=i))
        record = {"audio": {"path": wav.name}, "sentence": text, "duration": seconds}
        if text:
            half = round(seconds / 2, 2)
            record["sentences"] = [
                {"start": 0.0, "end": half, "text": text[: len(text) // 2]},
                {"start": half, "end": seconds, "text": text[len(text) // 2 :]},
            ]
        if language:
            record["language"] = language
        lines.append(record)
    lines.extend(extra or [])
    path = folder / name
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8"
    )
    return path


def small_config(model, train, out, *, resolve: bool = False, **overrides):
    """A ``FinetuneConfig`` for a few LoRA steps on the tiny model; keyword arguments override.

    The one test-config helper of the training tests: each test file binds its own
    differences with ``functools.partial``. ``resolve=True`` returns what ``finetune``
    would run on a CPU (``resolved(cuda_available=False, bf16_supported=False)``).
    """
    from whisper_finetune.training.config import FinetuneConfig

    base = dict(
        base_model=str(model),
        train_data=str(train),
        output_dir=str(out),
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        max_steps=2,
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-2,
        warmup_steps=0,
        lora_r=4,
        seed=7,
        report_to=("none",),
    )
    cfg = FinetuneConfig(**{**base, **overrides})
    return cfg.resolved(False, False) if resolve else cfg
