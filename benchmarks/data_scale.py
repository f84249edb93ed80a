"""Data at real scale, in one run: slices of long files, million-record manifests,
validation throughput, and whether the data pipeline keeps a GPU busy.

Sections (each prints a small table):

1. **Slice loading.** A 60 min opus file (48 kHz mono, as WenetSpeech ships) and a 10 s
   one; the time to load a 10 s slice from the start, middle and end of the long file,
   against loading the whole short file (the ratio must stay under 2x), and, for scale,
   one full decode of the long file (what every slice used to cost).
2. **Manifests.** A 1,000,000-record JSON Lines manifest: time to open it (the line
   index), memory the open manifest holds (tracemalloc peak and the index's bytes),
   time to iterate all records, time to read 10,000 random records; against the eager
   list of records, measured on 100,000 records and scaled to a million.
3. **Validation.** ``prepare validate`` on a corpus of short wavs with 1 and 2 worker
   processes: records per second (decode every file).
4. **Data pipeline vs GPU.** Samples per second of :class:`WhisperDataset` in one process
   (= one dataloader worker): decode, augmentation (speed and volume), log-mel; for 5 s
   wavs and for 10 s slices of the long opus file, 80 and 128 mel bins; with transformers'
   log-mel on torch (what it uses when torch is installed) and on numpy. Then training
   samples per second of whisper-small and whisper-large-v3 LoRA on one H100/H200 from
   their counted FLOPs (:mod:`whisper_finetune.data.workers`), and the workers a GPU needs.

    python benchmarks/data_scale.py            # about 10 minutes on 2 cores
    python benchmarks/data_scale.py --quick    # smaller sizes, about a minute
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _encode_opus(path: Path, seconds: float, seed: int = 0) -> Path:
    """Speech-like noise bursts, encoded to Ogg/Opus at 48 kHz in one-second frames."""
    import av

    rate = 48000
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=rate, options={"b": "32k"})
        stream.layout = "mono"
        for i in range(int(seconds)):
            t = np.arange(rate) / rate
            x = 0.2 * np.sin(2 * np.pi * (150 + 100 * rng.random()) * t) * (rng.random() > 0.2)
            x = (x + 0.02 * rng.standard_normal(rate)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(x[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i * rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def slices(work: Path, minutes: float, repeats: int) -> dict:
    from whisper_finetune.data.audio import load_audio

    long = _encode_opus(work / "long.opus", minutes * 60)
    short = _encode_opus(work / "short.opus", 10, seed=1)
    total = minutes * 60
    base = _median_time(lambda: load_audio(short), repeats)
    rows = {}
    for where, start in (("start", 0.0), ("middle", total / 2), ("end", total - 10.0)):
        rows[where] = _median_time(lambda s=start: load_audio(long, s, s + 10.0), repeats)
    full = _median_time(lambda: load_audio(long), 1)
    print(
        f"\n## 1. Slice loading ({minutes:g} min opus, 10 s slices, median of {repeats}; {_load()})\n"
    )
    print("| load | seconds | ratio to a 10 s file |\n| --- | --- | --- |")
    print(f"| whole 10 s opus file | {base:.4f} | 1.00 |")
    for where, t in rows.items():
        print(f"| 10 s slice at the {where} | {t:.4f} | {t / base:.2f} |")
    print(f"| (before: decode the whole {minutes:g} min file) | {full:.2f} | {full / base:.0f} |")
    return {"short": base, **rows, "full_decode": full, "max_ratio": max(rows.values()) / base}


def _write_manifest(path: Path, n: int) -> None:
    line = (
        '{{"audio": {{"path": "audio/{i:07d}.opus", "start_time": {s:.2f}, "end_time": {e:.2f}}}, '
        '"sentence": "而对楼市成交抑制作用最大的限购{i}", "duration": {d:.2f}, "language": "zh"}}\n'
    )
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, 10000):
            f.write(
                "".join(
                    line.format(i=i, s=i % 600, e=i % 600 + 4.5, d=4.5)
                    for i in range(start, min(n, start + 10000))
                )
            )


def manifests(work: Path, n: int) -> dict:
    from whisper_finetune.data.manifest import Manifest

    path = work / "big.jsonl"
    _write_manifest(path, n)
    size = path.stat().st_size
    tracemalloc.start()
    t = time.perf_counter()
    manifest = Manifest(path, check=False)
    open_s = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t = time.perf_counter()
    count = sum(1 for _ in manifest)
    iterate_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    picks = rng.integers(0, n, 10000)
    t = time.perf_counter()
    for i in picks:
        manifest[int(i)]
    random_s = time.perf_counter() - t
    # the eager list, on a tenth, scaled
    small = work / "small.jsonl"
    _write_manifest(small, n // 10)
    tracemalloc.start()
    eager = list(Manifest(small, check=False))
    eager_held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del eager
    per_million = 1e6 / n
    print(f"\n## 2. Manifests ({n:,} records, {size / 1e6:.0f} MB of JSON Lines)\n")
    print("| measure | lazy (line index) | eager list of records |\n| --- | --- | --- |")
    print(
        f"| memory per million records | {held * per_million / 1e6:.1f} MB "
        f"(index {manifest.nbytes() * per_million / 1e6:.1f} MB) "
        f"| {eager_held * 10 * per_million / 1e6:.0f} MB |"
    )
    print(f"| peak while opening (the scan reads 16 MB at a time) | {peak / 1e6:.0f} MB | |")
    print(f"| open (build the index) | {open_s:.2f} s | (parse everything) |")
    print(f"| iterate all {count:,} records (parse each) | {iterate_s:.1f} s | |")
    print(f"| 10,000 random records | {random_s:.2f} s | |")
    return {
        "records": n,
        "bytes": size,
        "open_s": open_s,
        "iterate_s": iterate_s,
        "random_10k_s": random_s,
        "lazy_mb_per_million": held * per_million / 1e6,
        "open_peak_mb": peak / 1e6,
        "eager_mb_per_million": eager_held * 10 * per_million / 1e6,
    }


def validation(work: Path, n_files: int) -> dict:
    from whisper_finetune.data.recipes.validate import ValidateConfig, validate_manifest

    folder = work / "corpus"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n_files):  # Common Voice-like: short compressed clips
        seconds = int(rng.integers(4, 9))
        _encode_opus(folder / f"{i:05d}.opus", seconds, seed=i)
        rec = {"audio": {"path": f"{i:05d}.opus"}, "sentence": "你好世界", "duration": seconds}
        lines.append(json.dumps(rec, ensure_ascii=False))
    manifest = folder / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = {}
    for workers in (1, 2):
        config = ValidateConfig(manifest=str(manifest), workers=workers, cache=False)
        t = time.perf_counter()
        result = validate_manifest(config)
        rows[workers] = result.records / (time.perf_counter() - t)
    print(f"\n## 3. Validation ({n_files} opus clips of 4-8 s, every file decoded; {_load()})\n")
    print("| processes | records/s |\n| --- | --- |")
    for workers, rate in rows.items():
        print(f"| {workers} | {rate:.0f} |")
    print("\n(2 processes include starting them, about a second; on a shared machine the")
    print("second core is not always free)")
    return {str(k): v for k, v in rows.items()}


def _dataset(records, mels: int, augment: bool, tokenizer):
    from transformers import WhisperFeatureExtractor

    from whisper_finetune.data.augment import Augmenter, parse_specs
    from whisper_finetune.data.dataset import LabelBuilder, WhisperDataset

    augmenter = None
    if augment:
        specs = parse_specs(
            [
                {"type": "speed", "params": {}, "prob": 0.5},
                {"type": "volume", "params": {}, "prob": 0.5},
            ]
        )
        augmenter = Augmenter(specs)
    return WhisperDataset(
        records,
        WhisperFeatureExtractor(feature_size=mels),
        LabelBuilder(tokenizer),
        augmenter=augmenter,
        timestamp_ratio=0.5,
    )


def _rate(dataset, n: int) -> tuple[float, float]:
    """Samples per second of wall-clock time, and per second of this process's CPU time
    (what a worker gets on a core of its own, whatever else the machine is running)."""
    dataset[0]  # warm up
    t, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        dataset[i % len(dataset)]
    return n / (time.perf_counter() - t), n / (time.process_time() - cpu)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def pipeline(work: Path, samples: int, long_opus: Path) -> dict:
    import torch
    from transformers import WhisperFeatureExtractor, WhisperTokenizerFast

    from whisper_finetune.data import workers as w
    from whisper_finetune.data.audio import SAMPLE_RATE, write_wav
    from whisper_finetune.data.manifest import Record, TimedText
    from whisper_finetune.models.tiny import build_tiny_whisper

    torch.set_num_threads(1)  # one worker, one core
    # the real multilingual tokenizer, with its timestamp tokens
    tokenizer = WhisperTokenizerFast.from_pretrained(build_tiny_whisper(work / "tiny"))
    rng = np.random.default_rng(0)
    wavs = []
    for i in range(32):
        wave = 0.1 * rng.standard_normal(5 * SAMPLE_RATE).astype(np.float32)
        path = write_wav(work / "pipe" / f"{i}.wav", wave)
        wavs.append(
            Record(str(path), "今天天气很好", 5.0, sentences=(TimedText(0, 5, "今天天气很好"),))
        )
    total = 60 * float(os.environ.get("DATA_SCALE_MINUTES", "60"))
    slices_ = [
        Record(str(long_opus), "今天天气很好", 10.0, start_time=s, end_time=s + 10.0)
        for s in rng.uniform(0, total - 10, 32).round(2)
    ]
    rows = {}
    for label, records, mels, augment in (
        ("5 s wav, 80 mels, augmented", wavs, 80, True),
        ("5 s wav, 80 mels", wavs, 80, False),
        ("5 s wav, 128 mels, augmented", wavs, 128, True),
        (f"10 s slice of a {total / 60:g} min opus, 80 mels, augmented", slices_, 80, True),
    ):
        rows[label] = _rate(_dataset(records, mels, augment, tokenizer), samples)
    extractor = WhisperFeatureExtractor(feature_size=80)
    wave = np.zeros(5 * SAMPLE_RATE, np.float32)
    torch_s = _median_time(lambda: extractor(wave, sampling_rate=SAMPLE_RATE), 20)
    padded = np.zeros(30 * SAMPLE_RATE, np.float32)
    numpy_s = _median_time(lambda: extractor._np_extract_fbank_features(padded[None], "cpu"), 5)
    worker = rows["5 s wav, 80 mels, augmented"][1]
    slowest = min(cpu for _, cpu in rows.values())
    print(f"\n## 4. Data pipeline vs GPU ({_load()})\n")
    print("| one dataloader worker | samples/s (wall clock) | samples per CPU-second |")
    print("| --- | --- | --- |")
    for label, (wall, cpu) in rows.items():
        print(f"| {label} | {wall:.0f} | {cpu:.0f} |")
    print(
        f"\nlog-mel of one 30 s window: {torch_s * 1000:.1f} ms on torch (transformers' choice "
        f"when torch is installed), {numpy_s * 1000:.1f} ms on numpy"
    )
    print(
        f"\nGPU: {w.GPU_BF16_PEAK_TFLOPS:g} TFLOP/s dense bf16 (H100/H200) at the "
        f"utilisation measured on an H100 (small {w.UTILISATION['small']:.1%}, large-v3 "
        f"{w.UTILISATION['large']:.1%}; data/workers.py); LoRA r=32 on {', '.join(w.LORA_TARGETS)}; "
        f"30 s input, {w.LABEL_TOKENS} label tokens; batch 16\n"
    )
    print(
        "| model | TFLOP per sample (fwd+bwd, counted) | GPU samples/s | batches of 16/s "
        "| workers needed: 5 s wavs | workers needed: slices of long opus "
        "| default (data/workers.py) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    gpu = {}
    for size, name in (("small", "whisper-small"), ("large", "whisper-large-v3")):
        flops = w.lora_training_flops(size)
        rate = w.gpu_samples_per_s(flops, w.UTILISATION[size])
        need = [math.ceil(rate * w.HEADROOM / worker), math.ceil(rate * w.HEADROOM / slowest)]
        gpu[name] = {"tflop_per_sample": flops / 1e12, "samples_per_s": rate, "workers": need}
        print(
            f"| {name} | {flops / 1e12:.3f} | {rate:.0f} | {rate / 16:.1f} | {need[0]} "
            f"| {need[1]} | {w.workers_needed(size)} |"
        )
    print(
        f"\nWorkers needed = GPU samples/s x {w.HEADROOM:g} (headroom) over a worker's samples per CPU-second (what it "
        f"makes on a core of its own). The --num_workers default on a GPU takes the slowest "
        f"input measured ({w.WORKER_SAMPLES_PER_S:g} in data/workers.py), capped by the "
        f"cores per GPU less one."
    )
    return {"worker_samples_per_s": rows, "logmel_ms": [torch_s * 1e3, numpy_s * 1e3], "gpu": gpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--only", nargs="+", type=int, choices=(1, 2, 3, 4), help="run only these sections"
    )
    args = parser.parse_args()
    only = set(args.only or (1, 2, 3, 4))
    minutes = 10.0 if args.quick else 60.0
    os.environ["DATA_SCALE_MINUTES"] = str(minutes)
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="data_scale_") as tmp:
        work = Path(tmp)
        if 1 in only:
            figures["slices"] = slices(work, minutes, 3 if args.quick else 5)
        if 2 in only:
            figures["manifests"] = manifests(work, 100_000 if args.quick else 1_000_000)
        if 3 in only:
            figures["validation"] = validation(work, 64 if args.quick else 400)
        if 4 in only:
            long = work / "long.opus"
            if not long.exists():
                _encode_opus(long, minutes * 60)
            figures["pipeline"] = pipeline(work, 20 if args.quick else 60, long)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    if "slices" in figures:
        ratio = figures["slices"]["max_ratio"]
        print(f"\nslice-load ratio {ratio:.2f}x: {'OK' if ratio < 2.0 else 'OVER 2x'}")


if __name__ == "__main__":
    main()
