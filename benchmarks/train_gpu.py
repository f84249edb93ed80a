"""GPU training throughput of three ways to fine-tune Whisper with LoRA, side by side.

For each shape (random weights of the real dimensions, the real tokenizer, via
``whisper_finetune.models.tiny``) and on the same data (the package's real 16 kHz
Mandarin clips, cycled), batch and adapter (LoRA r=32 alpha=64 on q, k, v, out, fc1, fc2):

``plain``       a plain PyTorch loop with every batch already on the device: the speed the
                model itself allows (bf16 autocast on CUDA, AdamW).
``recipe``      what a user writes from the original Whisper-Finetune project:
                ``Seq2SeqTrainer`` + PEFT, a Dataset that reads the wav and runs
                ``WhisperProcessor`` per item, 8 workers, bf16.
``ours``        ``whisper_finetune.training.train.finetune`` with its defaults.
``ours-packed`` the same on windows packed from the clips (``prepare pack``): one sample
                holds several utterances, so utterances/s exceeds samples/s.
``dataloader``  the project's data pipeline alone (dataset, collator, default workers):
                samples/s it produces with no model behind it.

Each row runs in its own subprocess (its peak GPU memory is its own; an out-of-memory or a
crash loses that row only). Times are wall time between optimizer-step ends after
``--warmup`` steps, a CUDA sync at each, data waits included. Reported: samples/s,
utterances/s, audio seconds/s (samples/s x the mean audio per sample), peak GPU memory,
MFU (samples/s x counted training FLOPs per sample / ``--peak_tflops``), the attention
implementation in use, and the loss of every step (so that a faster variant can be
checked for the same curve).

``--variants`` adds ``plain`` rows with one change each: ``bf16-base`` (the frozen base
held in bf16, adapters and optimizer in fp32), ``eager`` (attention without SDPA),
``compile`` (``torch.compile``, falling back to eager mode if it fails: the row says so),
``fused-adamw``, ``no-dropout`` (LoRA dropout 0). ``--memory`` runs the memory checks:
a packaged config under ``torch.cuda.set_per_process_memory_fraction`` (a 24 GB or 16 GB
card on a bigger one), at its batch and larger, reporting the largest batch that fits.

    python benchmarks/train_gpu.py --out OUT                       # base, small, large-v3
    python benchmarks/train_gpu.py --out OUT --shapes small --variants bf16-base compile
    python benchmarks/train_gpu.py --out OUT --memory lora-24gb-gpu.yaml:large-v3:24
    python benchmarks/train_gpu.py --out OUT --shapes tiny --device cpu --steps 2 --warmup 1

Writes ``OUT/train_gpu.json`` (every row, the machine and the versions) after each row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("train_gpu")

SHAPES = {
    # d_model, layers (encoder = decoder), heads, ffn, large-v3's 128 mels and vocabulary
    "tiny": dict(d_model=64, layers=2, heads=2, ffn=256, v3=False),  # for tests on the CPU
    "base": dict(d_model=512, layers=6, heads=8, ffn=2048, v3=False),
    "small": dict(d_model=768, layers=12, heads=12, ffn=3072, v3=False),
    "medium": dict(d_model=1024, layers=24, heads=16, ffn=4096, v3=False),
    "large-v3": dict(d_model=1280, layers=32, heads=20, ffn=5120, v3=True),
}
TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
ROWS = ("plain", "recipe", "ours", "ours-packed", "dataloader")
VARIANTS = ("bf16-base", "eager", "compile", "fused-adamw", "no-dropout")
H100_BF16_TFLOPS = 989.0  # dense, SXM


# ----------------------------------------------------------------------------- setup
def build_model(shape: str, folder: Path) -> Path:
    """A Whisper of ``shape``'s dimensions with random weights and the real tokenizer."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    from whisper_finetune.models.tiny import build_tiny_whisper

    s = SHAPES[shape]
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder  # built by an earlier run with the same --work
    tiny = build_tiny_whisper(folder.parent / f"{folder.name}-tokenizer", v3=s["v3"])
    if shape == "tiny":
        return tiny
    shutil.copytree(tiny, folder, dirs_exist_ok=True)
    config = WhisperConfig.from_pretrained(tiny)
    config.update(
        dict(
            d_model=s["d_model"],
            encoder_layers=s["layers"],
            decoder_layers=s["layers"],
            encoder_attention_heads=s["heads"],
            decoder_attention_heads=s["heads"],
            encoder_ffn_dim=s["ffn"],
            decoder_ffn_dim=s["ffn"],
        )
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # random init of 1.5 B parameters is slow on the CPU
        model = WhisperForConditionalGeneration(config)
    generation = GenerationConfig.from_pretrained(tiny)
    generation.alignment_heads = [[s["layers"] - 1, 0]]
    model.generation_config = generation
    model.save_pretrained(folder)
    return folder


def write_manifest(folder: Path, n: int, source: str | None = None) -> Path:
    """``n`` records cycling through ``source`` (default: the shipped real clips)."""
    from whisper_finetune.assets import real_zh_dev_manifest

    src = Path(source or real_zh_dev_manifest())
    rows = read_rows(src)
    if not rows:
        raise ValueError(f"{src}: no records")
    for r in rows:
        path = Path(r["audio"]["path"])
        r["audio"]["path"] = str(path if path.is_absolute() else (src.parent / path).resolve())
    out = folder / "train.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(rows[i % len(rows)], ensure_ascii=False) + "\n")
    return out


def read_rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def manifest_stats(path: Path) -> dict:
    """Mean audio seconds and utterances per record (packed windows list ``sentences``)."""
    rows = read_rows(path)
    seconds = [float(r["duration"]) for r in rows]
    utterances = [len(r.get("sentences") or []) or 1 for r in rows]
    return {
        "records": len(rows),
        "audio_s_per_sample": sum(seconds) / len(rows),
        "utterances_per_sample": sum(utterances) / len(rows),
    }


def label_tokens(model_dir: Path, manifest: Path) -> int:
    """The mean label length (prefix, text, end) of the records, in tokens."""
    from transformers import WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(model_dir, language="zh", task="transcribe")
    lengths = [len(tokenizer(r["sentence"]).input_ids) for r in read_rows(manifest)]
    return max(1, round(sum(lengths) / len(lengths)))


def training_flops(model_dir: Path, label_tokens: int, rank: int = 32) -> float:
    """FLOPs of one LoRA training sample (forward and backward), counted by torch on the
    model built on the meta device (no weights, no compute)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS))
    model.train()
    features = torch.zeros(1, config.num_mel_bins, 3000, device="meta")
    labels = torch.zeros(1, label_tokens, dtype=torch.long, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        model(input_features=features, labels=labels).loss.backward()
    return float(counter.get_total_flops())


# ----------------------------------------------------------------------------- timing
class Clock:
    """Wall-clock stamps at optimizer-step ends (after a device sync) and the losses."""

    def __init__(self, device: str):
        self.device, self.stamps, self.losses = device, [], []
        self.attention = None  # the attention implementation the Trainer's model runs

    def tick(self, loss: float | None = None) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())
        if loss is not None:
            self.losses.append(round(float(loss), 5))

    def samples_per_s(self, batch: int, warmup: int) -> float:
        t = self.stamps[max(warmup, 1) - 1 :]
        if len(t) < 2:
            raise RuntimeError(f"only {len(self.stamps)} steps timed; need more than --warmup")
        return batch * (len(t) - 1) / (t[-1] - t[0])

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class Tick(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                config = getattr(model, "config", None)
                clock.attention = getattr(config, "_attn_implementation", None)

            def on_step_end(self, args, state, control, **kwargs):
                clock.tick()

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    clock.losses.append(round(float(logs["loss"]), 5))

        return Tick()


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


# ----------------------------------------------------------------------------- rows
def row_plain(spec: dict) -> dict:
    """A plain PyTorch loop over batches already on the device, with one ``variant``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from whisper_finetune.data.audio import load_audio

    device, variant, batch = spec["device"], spec.get("variant"), spec["batch"]
    torch.manual_seed(0)
    processor = WhisperProcessor.from_pretrained(spec["model"], language="zh", task="transcribe")
    rows = read_rows(Path(spec["train"]))[:batch]
    audio = [load_audio(r["audio"]["path"], sample_rate=16000) for r in rows]
    feats = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt")
    ids = processor.tokenizer([r["sentence"] for r in rows], padding=True, return_tensors="pt")
    labels = ids["input_ids"].masked_fill(ids["attention_mask"].ne(1), -100)[:, 1:]
    x, labels = feats["input_features"].to(device), labels.to(device)

    attn = "eager" if variant == "eager" else "sdpa"
    model = WhisperForConditionalGeneration.from_pretrained(spec["model"], attn_implementation=attn)
    half = torch.bfloat16 if device == "cuda" or spec.get("cpu_bf16") else None
    if variant == "bf16-base" and half is not None:
        model = model.to(half)  # the frozen base in bf16; adapters are made fp32 below
    model = model.to(device)
    dropout = 0.0 if variant == "no-dropout" else 0.05
    lora = LoraConfig(r=32, lora_alpha=64, lora_dropout=dropout, target_modules=list(TARGETS))
    model = get_peft_model(model, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()
    model.train()
    fused = variant == "fused-adamw"
    opt = torch.optim.AdamW(trainable, lr=1e-4, fused=True if fused else None)
    result: dict = {"attention": model.config._attn_implementation}

    def step(inputs, targets):
        if half is not None:
            with torch.autocast(device, dtype=half):
                return model(input_features=inputs, labels=targets).loss
        return model(input_features=inputs, labels=targets).loss

    forward = step
    if variant == "compile":
        try:
            forward = torch.compile(step)
            forward(x, labels).backward()
            opt.zero_grad(set_to_none=True)
            result["compiled"] = True
        except Exception as exc:  # the fallback: eager mode, and the row says why
            forward, result["compiled"] = step, False
            result["compile_error"] = f"{type(exc).__name__}: {exc}"[:300]
            opt.zero_grad(set_to_none=True)
    _reset_peak(device)
    clock = Clock(device)
    for _ in range(spec["warmup"] + spec["steps"]):
        loss = forward(x, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.tick(loss.detach())
    return {**result, **_rates(clock, spec), "peak_gib": _peak_gib(device)}


def row_recipe(spec: dict) -> dict:
    """The original project's recipe: Seq2SeqTrainer + PEFT, wav + WhisperProcessor per item."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    from whisper_finetune.data.audio import load_audio

    device, batch = spec["device"], spec["batch"]
    processor = WhisperProcessor.from_pretrained(spec["model"], language="zh", task="transcribe")
    rows = read_rows(Path(spec["train"]))
    sot = processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>")

    class WavDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            audio = load_audio(rows[i]["audio"]["path"], sample_rate=16000)
            d = processor(audio=audio, sampling_rate=16000, text=rows[i]["sentence"])
            return {"input_features": d["input_features"][0], "labels": d["labels"]}

    def collate(items):
        out = processor.feature_extractor.pad(
            [{"input_features": f["input_features"]} for f in items], return_tensors="pt"
        )
        lab = processor.tokenizer.pad(
            [{"input_ids": f["labels"]} for f in items], return_tensors="pt"
        )
        labels = lab["input_ids"].masked_fill(lab["attention_mask"].ne(1), -100)
        out["labels"] = labels[:, 1:] if (labels[:, 0] == sot).all() else labels
        return out

    model = WhisperForConditionalGeneration.from_pretrained(spec["model"])
    lora = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules=list(TARGETS))
    model = get_peft_model(model, lora)
    clock = Clock(device)
    args = Seq2SeqTrainingArguments(
        output_dir=str(Path(spec["work"]) / "recipe"),
        per_device_train_batch_size=batch,
        learning_rate=1e-3,
        warmup_steps=0,
        max_steps=spec["warmup"] + spec["steps"],
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        dataloader_num_workers=8 if device == "cuda" else 0,
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        remove_unused_columns=False,
        label_names=["labels"],
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=WavDataset(),
        data_collator=collate,
        callbacks=[clock.callback()],
    )
    _reset_peak(device)
    trainer.train()
    return {
        "attention": model.config._attn_implementation,
        "num_workers": args.dataloader_num_workers,
        **_rates(clock, spec),
        "peak_gib": _peak_gib(device),
    }


def _ours_config(spec: dict, train: str, out: Path):
    from whisper_finetune.training.config import FinetuneConfig

    fields = dict(
        base_model=spec["model"],
        train_data=train,
        output_dir=str(out),
        method="lora",
        lora_r=32,
        lora_alpha=64,
        per_device_train_batch_size=spec["batch"],
        max_steps=spec["warmup"] + spec["steps"],
        save_steps=10**6,
        logging_steps=1,
        warmup_steps=0,
        report_to=("none",),
        device=spec["device"],
    )
    if spec.get("config"):
        from whisper_finetune.cli._args import read_config_file

        fields = {**read_config_file(spec["config"]), **fields}
        fields.pop("test_data", None)
    return FinetuneConfig(**{**fields, **spec.get("overrides", {})})


def row_ours(spec: dict) -> dict:
    """``finetune`` with its defaults (or a packaged config), on plain or packed windows."""
    from whisper_finetune.training.train import finetune

    device, work = spec["device"], Path(spec["work"])
    train = spec["train"]
    if spec["row"] == "ours-packed":
        from whisper_finetune.data.recipes.pack import PackConfig, pack_manifest

        packed = pack_manifest(PackConfig(train, str(work / "packed" / "train.jsonl"), seed=0))
        train = str(packed.output)
        spec = {**spec, **manifest_stats(packed.output)}
    if device == "cuda" and spec.get("memory_fraction"):
        import torch

        torch.cuda.set_per_process_memory_fraction(spec["memory_fraction"])
    run_dir = Path(tempfile.mkdtemp(prefix=f"{spec['row']}-", dir=work))
    cfg = _ours_config(spec, train, run_dir)
    clock = Clock(device)
    _reset_peak(device)
    finetune(cfg, callbacks=[clock.callback()])
    saved = json.loads((run_dir / "finetune_config.json").read_text(encoding="utf-8"))
    keys = ("precision", "num_workers", "gradient_checkpointing", "device", "cache_features")
    return {
        "attention": clock.attention,
        "resolved": {k: saved.get(k) for k in keys if k in saved},
        "utterances_per_sample": spec["utterances_per_sample"],
        **_rates(clock, spec),
        "peak_gib": _peak_gib(device),
    }


def row_dataloader(spec: dict) -> dict:
    """The project's data pipeline alone: what ``finetune`` builds, with no model."""
    import torch
    from transformers import WhisperProcessor

    from whisper_finetune.data.collator import WhisperCollator
    from whisper_finetune.data.dataset import LabelBuilder
    from whisper_finetune.training import train as train_module

    cfg = _ours_config(spec, spec["train"], Path(spec["work"]) / "dataloader")
    cfg = cfg.resolved(cuda_available=spec["device"] == "cuda" or spec.get("as_cuda", False))
    processor = WhisperProcessor.from_pretrained(spec["model"])
    labels = LabelBuilder(processor.tokenizer, cfg.language, cfg.task)
    data = train_module._load_data(cfg, labels, processor.feature_extractor, True)
    collator = WhisperCollator(processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>"))
    loader = torch.utils.data.DataLoader(
        data["train"],
        batch_size=cfg.per_device_train_batch_size,
        shuffle=True,
        num_workers=cfg.num_workers,
        collate_fn=collator,
        pin_memory=spec["device"] == "cuda",
        persistent_workers=cfg.num_workers > 0,
    )
    clock = Clock("cpu")
    n = spec["warmup"] + spec["steps"]
    while len(clock.stamps) < n:
        for _ in loader:
            clock.tick()
            if len(clock.stamps) >= n:
                break
    rates = _rates(clock, {**spec, "flops_per_sample": None})  # no model: no MFU
    return {"num_workers": cfg.num_workers, "cpus": os.cpu_count(), **rates}


def _rates(clock: Clock, spec: dict) -> dict:
    rate = clock.samples_per_s(spec["batch"], spec["warmup"])
    out = {
        "samples_per_s": round(rate, 3),
        "utterances_per_s": round(rate * spec["utterances_per_sample"], 3),
        "audio_s_per_s": round(rate * spec["audio_s_per_sample"], 2),
        "steps_timed": len(clock.stamps) - max(spec["warmup"], 1),
        "losses": clock.losses,
    }
    if spec.get("flops_per_sample") and spec.get("peak_tflops") and spec["device"] == "cuda":
        out["mfu"] = round(rate * spec["flops_per_sample"] / (spec["peak_tflops"] * 1e12), 4)
    return out


ROW_FUNCTIONS = {
    "plain": row_plain,
    "recipe": row_recipe,
    "ours": row_ours,
    "ours-packed": row_ours,
    "dataloader": row_dataloader,
}


# ----------------------------------------------------------------------------- driver
def run_row(spec: dict, timeout: float) -> dict:
    """One row in a fresh subprocess; a failure (OOM, timeout, crash) is that row's result."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", dir=spec["work"]) as result:
        cmd = [sys.executable, __file__, "--worker", json.dumps(spec), "--result", result.name]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:g} s"}
        text = Path(result.name).read_text(encoding="utf-8")
        if proc.returncode != 0 or not text:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": f"exit {proc.returncode}: " + " | ".join(tail)[-600:]}
        return {**json.loads(text), "row_s": round(time.perf_counter() - t0, 1)}


def environment(device: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor(),
    }
    for name in ("torch", "transformers", "peft", "accelerate", "ctranslate2"):
        try:
            env[name] = version(name)
        except PackageNotFoundError:
            env[name] = None
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required="--worker" not in (argv or sys.argv), help="results folder")
    p.add_argument("--shapes", nargs="*", default=["base", "small", "large-v3"], choices=SHAPES)
    p.add_argument("--rows", nargs="*", default=list(ROWS), choices=ROWS)
    p.add_argument("--variants", nargs="*", default=[], choices=VARIANTS)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="optimizer steps timed")
    p.add_argument("--warmup", type=int, default=5, help="steps before timing starts")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--manifest", help="training clips (default: the shipped real-zh-dev clips)")
    p.add_argument(
        "--cpu_bf16",
        action="store_true",
        help="plain rows on the CPU: bf16 autocast as on CUDA (to check bf16-base's loss)",
    )
    p.add_argument("--peak_tflops", type=float, default=H100_BF16_TFLOPS, help="for MFU")
    p.add_argument("--row_timeout", type=float, default=600.0, help="seconds per row")
    p.add_argument(
        "--memory",
        nargs="*",
        default=[],
        metavar="CONFIG:SHAPE:GIB[:BATCH,...]",
        help="memory checks: a packaged config on a SHAPE in GIB of GPU memory, at the "
        "config's batch and the listed larger ones",
    )
    p.add_argument(
        "--work", help="scratch folder, kept with the models it built (default: a temporary one)"
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.worker:  # a row, in its own process
        spec = json.loads(a.worker)
        out = ROW_FUNCTIONS[spec["row"]](spec)
        Path(a.result).write_text(json.dumps(out), encoding="utf-8")
        return 0

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work or tempfile.mkdtemp(prefix="train-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    n_records = a.batch * (a.warmup + a.steps + 2)
    train = write_manifest(work, n_records, a.manifest)
    stats = manifest_stats(train)
    report = {"environment": environment(a.device), "args": vars(a), "data": stats, "rows": []}
    save = out / "train_gpu.json"

    def record(row: dict) -> None:
        report["rows"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "losses"}), flush=True)
        save.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")

    memory = [m.split(":") for m in a.memory]
    for m in memory:
        if len(m) not in (3, 4) or m[1] not in SHAPES:
            p.error(f"--memory {':'.join(m)}: want CONFIG:SHAPE:GIB[:BATCH,...]")
    shapes = list(dict.fromkeys([*a.shapes, *(m[1] for m in memory)]))
    for shape in shapes:
        t0 = time.perf_counter()
        model = build_model(shape, work / f"whisper-{shape}")
        import torch

        if a.device == "cuda":
            torch.cuda.empty_cache()
        tokens = label_tokens(model, train)  # the clips' mean label length, for the FLOP count
        common = dict(
            model=str(model),
            train=str(train),
            work=str(work),
            device=a.device,
            batch=a.batch,
            steps=a.steps,
            warmup=a.warmup,
            peak_tflops=a.peak_tflops,
            cpu_bf16=a.cpu_bf16,
            flops_per_sample=training_flops(model, tokens),
            **stats,
        )
        logger.info("%s: built in %.0f s", shape, time.perf_counter() - t0)
        jobs = []
        if shape in a.shapes:
            jobs += [dict(common, row=r) for r in a.rows]
            jobs += [dict(common, row="plain", variant=v) for v in a.variants]
        for config, mshape, gib, *batches in memory:
            if mshape != shape:
                continue
            total = torch.cuda.get_device_properties(0).total_memory if a.device == "cuda" else 0
            fraction = min(1.0, float(gib) * 2**30 / total) if total else None
            for b in [None, *(int(x) for x in (batches[0].split(",") if batches else []))]:
                overrides = {"per_device_train_batch_size": b} if b else {}
                job = dict(common, row="ours", config=config, memory_fraction=fraction)
                job.update(memory_gib=float(gib), overrides=overrides, steps=3, warmup=1)
                if b:
                    job["batch"] = b
                else:
                    from whisper_finetune.cli._args import read_config_file

                    job["batch"] = read_config_file(config).get("per_device_train_batch_size", 8)
                jobs.append(job)
        for spec in jobs:
            result = run_row(spec, a.row_timeout)
            keep = ("row", "variant", "config", "memory_gib", "batch", "flops_per_sample")
            record({"shape": shape, **{k: spec[k] for k in keep if spec.get(k)}, **result})
    if not a.work:  # a given --work keeps the models for the next run
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
