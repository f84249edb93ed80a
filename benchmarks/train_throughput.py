"""Training throughput and peak memory of LoRA, AdaLoRA and full fine-tuning, side by side.

Each configuration runs ``whisper_finetune.training.train.finetune`` (the real Trainer path,
nothing stubbed) in a fresh subprocess on synthetic clips, times the optimizer steps
after a warm-up, and reads the process's RSS high-water mark (``ru_maxrss``). The
result is printed as a Markdown table, and with ``--json`` also written as JSON.

Whisper's encoder always sees 30 s of log-mels (3000 frames; its position embedding is
fixed), so the clip length hardly matters: the cost is per sample. What makes CPU
training faster here: fp32 (no fp16 on CPU; ``--precision bf16`` uses autocast where
the CPU has bf16 instructions), one torch thread per core, no dataloader workers (they
would compete for the same cores), log-mels computed once (``cache_features``), and
adapters only where needed (``--lora_layers decoder`` skips the encoder's backward pass).

Examples::

    python benchmarks/train_throughput.py                       # whisper-base, batch 8, all six configs
    python benchmarks/train_throughput.py --steps 1 --warmup 1 --methods lora --checkpointing on
    python benchmarks/train_throughput.py --methods lora --precision bf16 --lora_layers decoder
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("train_throughput")

SENTENCES = (
    "今天天气很好我们一起去公园散步吧",
    "这个问题我们明天再讨论一下",
    "请把窗户打开让新鲜空气进来",
    "他每天早上六点起床锻炼身体",
)


def _synthetic_manifest(folder: Path, n_clips: int, seconds: float, seed: int = 0) -> Path:
    """``n_clips`` noisy chirps with Chinese labels (the content does not change the cost)."""
    import numpy as np

    from whisper_finetune.data.audio import SAMPLE_RATE, write_wav

    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_clips):
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wave = 0.2 * np.sin(
            2 * np.pi * (150 + 30 * i) * t * (1 + 0.1 * t)
        ) + 0.02 * rng.standard_normal(t.size)
        path = folder / f"clip{i}.wav"
        write_wav(path, wave.astype(np.float32))
        lines.append(
            {
                "audio": {"path": path.name},
                "sentence": SENTENCES[i % len(SENTENCES)],
                "duration": seconds,
            }
        )
    manifest = folder / "train.jsonl"
    manifest.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8"
    )
    return manifest


def _worker(spec: dict) -> dict:
    """Run one configuration in this (fresh) process and measure it."""
    import torch
    from transformers import TrainerCallback

    from whisper_finetune.training.train import FinetuneConfig, finetune

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.durations = []
            self._start = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = (time.perf_counter(), time.process_time())

        def on_step_end(self, args, state, control, **kwargs):
            wall, cpu = self._start
            self.durations.append((time.perf_counter() - wall, time.process_time() - cpu))

    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="wf-bench-") as tmp:
        batch = spec["batch_size"]
        train = spec.get("train_data") or str(
            _synthetic_manifest(Path(tmp), batch, spec["clip_seconds"])
        )
        cfg = FinetuneConfig(
            base_model=spec["base_model"],
            train_data=train,
            output_dir=str(Path(tmp) / "out"),
            method=spec["method"],
            gradient_checkpointing=spec["checkpointing"],
            precision=spec["precision"],
            per_device_train_batch_size=batch,
            max_steps=spec["warmup"] + spec["steps"],
            save_steps=10**6,
            logging_steps=10**6,
            warmup_steps=0,
            report_to=("none",),
            device="cpu",
            cache_features=True,
            num_workers=spec["num_workers"],
            lora_layers=spec["lora_layers"],
            lora_r=spec["lora_r"],
            lora_alpha=2 * spec["lora_r"],
            lora_dropout=spec["lora_dropout"],
            adalora_tinit=0,
            adalora_tfinal=0,
        )
        start = time.perf_counter()
        finetune(cfg, callbacks=[timer])
        total = time.perf_counter() - start
    timed = timer.durations[spec["warmup"] :]
    step = sum(wall for wall, _ in timed) / len(timed)
    cpu = sum(c for _, c in timed) / len(timed)
    return {
        "seconds_per_step": step,
        "samples_per_second": batch / step,
        "seconds_per_sample": step / batch,
        # CPU time of all threads: less sensitive than wall time to other jobs on the machine
        "cpu_seconds_per_sample": cpu / batch,
        "first_step_seconds": timer.durations[0][0],
        "wall_seconds": total,
        # Linux reports ru_maxrss in KiB
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "torch_threads": torch.get_num_threads(),
    }


# glibc otherwise returns large freed blocks to the OS and faults fresh pages in on
# every step (seen here: ~700k page faults and ~4% of the time per step at batch 8)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(16 << 30)}


def _run_one(spec: dict, timeout: float, tune_malloc: bool) -> dict:
    cmd = [sys.executable, __file__, "--_worker", json.dumps(spec)]
    env = {**os.environ, **(MALLOC_ENV if tune_malloc else {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        return {
            **spec,
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}",
        }
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**spec, **result}


def _table(rows: list[dict]) -> str:
    head = "| method | checkpointing | precision | batch | s/step | samples/s | s/sample | CPU s/sample | peak RSS (GB) |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gc = "on" if r["checkpointing"] else "off"
        if "error" in r:
            lines.append(
                f"| {r['method']} | {gc} | {r['precision']} | {r['batch_size']} | error: {r['error']} | | | | |"
            )
            continue
        lines.append(
            f"| {r['method']} | {gc} | {r['precision']} | {r['batch_size']} "
            f"| {r['seconds_per_step']:.2f} | {r['samples_per_second']:.2f} | {r['seconds_per_sample']:.2f} "
            f"| {r['cpu_seconds_per_sample']:.2f} | {r['peak_rss_gb']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base_model", default="embedded:whisper-base")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["lora", "adalora", "full"],
        choices=["lora", "adalora", "full"],
    )
    parser.add_argument("--checkpointing", default="both", choices=["both", "on", "off"])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument(
        "--steps", type=int, default=5, help="timed optimizer steps per configuration"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--lora_layers", default="all", help="all, encoder, decoder or a regex")
    parser.add_argument("--lora_r", type=int, default=32)
    parser.add_argument(
        "--lora_dropout", type=float, default=0.05, help="0 skips dropout masks (~9%% faster here)"
    )
    parser.add_argument(
        "--tune_malloc",
        action="store_true",
        help="run workers with glibc malloc settings that avoid re-faulting pages every step",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--clip_seconds", type=float, default=8.0)
    parser.add_argument(
        "--train_data", default=None, help="a real manifest instead of synthetic clips"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per configuration")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(_worker(json.loads(args._worker))), flush=True)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    checkpointing = {"both": [False, True], "on": [True], "off": [False]}[args.checkpointing]
    rows = []
    for method in args.methods:
        for gc in checkpointing:
            spec = {
                "base_model": args.base_model,
                "method": method,
                "checkpointing": gc,
                "precision": args.precision,
                "batch_size": args.batch_size,
                "steps": args.steps,
                "warmup": args.warmup,
                "lora_layers": args.lora_layers,
                "lora_r": args.lora_r,
                "lora_dropout": args.lora_dropout,
                "threads": args.threads,
                "num_workers": args.num_workers,
                "clip_seconds": args.clip_seconds,
                "train_data": args.train_data,
            }
            logger.info("running %s, checkpointing %s ...", method, "on" if gc else "off")
            row = _run_one(spec, args.timeout, args.tune_malloc)
            logger.info(
                "%s",
                {k: row[k] for k in row if k in ("seconds_per_sample", "peak_rss_gb", "error")},
            )
            rows.append(row)
    print(
        f"\nwhisper training throughput: {args.base_model}, {os.cpu_count()} CPUs, "
        f"{args.steps} timed steps after {args.warmup} warm-up, lora_layers={args.lora_layers}, "
        f"lora_dropout={args.lora_dropout}, malloc tuned: {args.tune_malloc}\n"
    )
    print(_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
