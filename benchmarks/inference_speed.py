"""Inference speed of whisper-base: transformers, CTranslate2 and whisper.cpp in one run.

For each configuration (backend, weight type, beam size, batching) and each clip set this
prints the real-time factor (processing seconds / audio seconds; lower is faster), the
speed-up over transformers greedy (at the same beam size where transformers was run),
the CER against the reference, the peak resident memory of the process and the size of
the model file it loaded. The clip sets:

* ``test.wav``: 8.4 s of real Mandarin;
* ``long``: the 48 shipped real recordings (``real-zh-dev``'s 40, then ``real-dev``'s 7
  and ``test.wav``), each once, end to end with 0.5 s pauses: 420 s of distinct speech;
  the reference is their references joined. ``--long_seconds S`` takes clips in that
  order until the recording reaches S seconds, and refuses an S the 48 do not reach (no
  clip is repeated: repeated speech rewards a decoder that skips what it just wrote);
* ``synth``: the demo's synthetic test split (60 clips, espeak-ng), one call per clip
  (``transcribe_batch`` in batches for the batched configurations). whisper-base loops
  on most of these clips, so each is capped at twice the new tokens the longest
  reference needs (the demo's ``token_limit``: 44 here); uncapped, every loop runs
  to 448 tokens and the time measures the loop, not the engine.

Every configuration runs in a fresh subprocess with 2 threads, so peak memory is its own;
each is warmed up once on a 1 s clip (and on 70 s of the long clip) before timing.
``benchmarks/long_audio.py`` compares the long-audio settings themselves.

    python benchmarks/inference_speed.py                        # the full table
    python benchmarks/inference_speed.py --sets test.wav        # quick
    python benchmarks/inference_speed.py --configs "whisper.cpp q8_0 greedy"
    # with --json FILE, --configs re-runs those rows of FILE and keeps the others
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / "src" / "whisper_finetune" / "assets" / "real_speech"
THREADS = 2

# (label, backend, compute_type, beam_size, batch_size)
CONFIGS = [
    ("transformers fp32 greedy", "transformers", "float32", 1, 1),
    ("transformers fp32 beam 5", "transformers", "float32", 5, 1),
    ("ct2 float32 greedy", "ct2", "float32", 1, 1),
    ("ct2 float32 beam 5", "ct2", "float32", 5, 1),
    ("ct2 float32 greedy batched (8, decodes VAD chunks)", "ct2", "float32", 1, 8),
    ("ct2 int8 greedy", "ct2", "int8", 1, 1),
    ("ct2 int8 beam 5", "ct2", "int8", 5, 1),
    ("ct2 int8 greedy batched (8, decodes VAD chunks)", "ct2", "int8", 1, 8),
    # batch 0: the loader's defaults, i.e. sequential for short clips and, for audio of
    # LONG_AUDIO_SECONDS or more, VAD chunks batched over one-thread replicas
    ("ct2 int8 default (long audio: batched over replicas)", "ct2", "int8", 1, 0),
    ("whisper.cpp f16 greedy", "whispercpp", "f16", 1, 1),
    ("whisper.cpp f16 beam 5", "whispercpp", "f16", 5, 1),
    ("whisper.cpp q8_0 greedy", "whispercpp", "q8_0", 1, 1),
    ("whisper.cpp q8_0 beam 5", "whispercpp", "q8_0", 5, 1),
    ("whisper.cpp q5_0 greedy", "whispercpp", "q5_0", 1, 1),
    ("whisper.cpp q5_0 beam 5", "whispercpp", "q5_0", 5, 1),
]
SETS = ("test.wav", "long", "synth")


def long_clip(min_seconds: float | None = None) -> tuple[np.ndarray, str]:
    """The 48 shipped real recordings, each once, end to end (0.5 s pauses) with their
    references joined; with ``min_seconds``, only the first clips that reach it.

    Raises:
        ValueError: when all 48 clips do not reach ``min_seconds`` (nothing is repeated).
    """
    from whisper_finetune.assets import real_speech_manifest, real_zh_dev_manifest
    from whisper_finetune.data.audio import SAMPLE_RATE, load_audio
    from whisper_finetune.data.manifest import read_manifest

    records = [*read_manifest(real_zh_dev_manifest()), *read_manifest(real_speech_manifest())]
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    pieces, texts, total = [], [], 0
    for r in records:
        if min_seconds is not None and total >= min_seconds * SAMPLE_RATE:
            break
        audio = load_audio(r.audio_path)
        pieces += [audio, pause]
        texts.append(r.sentence)
        total += audio.size + pause.size
    if min_seconds is not None and total < min_seconds * SAMPLE_RATE:
        raise ValueError(
            f"--long_seconds {min_seconds:g}: the {len(records)} shipped clips last "
            f"{total / SAMPLE_RATE:.1f} s end to end, and none is repeated; ask for at most that"
        )
    return np.concatenate(pieces), "".join(texts)


def synth_split(folder: Path) -> list[tuple[np.ndarray, str]]:
    """The demo's synthetic test split (60 clips, seed 0), built once into ``folder``."""
    from whisper_finetune.data.audio import load_audio
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.data.synth import SynthConfig, build_corpus

    manifest = folder / "test.jsonl"
    if not manifest.is_file():
        cfg = SynthConfig(target_dir=str(folder), num_train=0, num_test=60, noise_share=0.02)
        manifest = build_corpus(cfg).test_manifest
    return [(load_audio(r.audio_path), r.sentence) for r in read_manifest(manifest)]


def clip_set(name: str, args) -> list[tuple[np.ndarray, str]]:
    from whisper_finetune.data.audio import load_audio

    if name == "test.wav":
        reference = json.loads((SHARED / "test.json").read_text(encoding="utf-8"))[0]["sentence"]
        return [(load_audio(SHARED / "test.wav"), reference)]
    if name == "long":
        return [long_clip(args.long_seconds)]
    return synth_split(Path(args.synth_dir))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_file(transcriber) -> Path:
    path = Path(transcriber.model_path)
    if path.is_file():
        return path
    for name in ("model.bin", "model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(path)


def worker(label: str, sets: list[str], args) -> dict:
    """Run one configuration on the clip sets; timings, CER, peak memory, model size."""
    from whisper_finetune.demo.measure import token_limit
    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.text import normalize_text

    _, backend, compute_type, beam, batch = next(c for c in CONFIGS if c[0] == label)
    # ct2 "greedy" rows decode sequentially (long_audio_batch 1); batch 0 keeps the default
    extra = {"long_audio_batch": batch} if backend == "ct2" and batch else {}
    model = load_transcriber(
        "embedded:whisper-base",
        backend,
        device="cpu",
        compute_type=compute_type,
        cpu_threads=THREADS,
        batch_size=max(batch, 1),
        **extra,
    )
    plain = DecodeOptions.plain(language="zh", beam_size=beam)  # one pass: like for like
    data = {name: clip_set(name, args) for name in sets}
    model.transcribe(np.asarray(data[sets[0]][0][0][:16000]), plain)  # warm-up
    if "long" in data:  # and long audio's path (the CTranslate2 default loads its replicas)
        model.transcribe(np.asarray(data["long"][0][0][: 70 * 16000]), plain)
    out: dict = {}
    for name, clips in data.items():
        options = plain
        if name == "synth":  # whisper-base loops on these clips: bound each at what the
            # longest reference needs, twice over, as the demo's evaluation does
            limit = token_limit([r for _, r in clips], "embedded:whisper-base")
            options = DecodeOptions.plain(language="zh", beam_size=beam, max_new_tokens=limit)
        audio_seconds = sum(a.size for a, _ in clips) / 16000
        start = time.perf_counter()
        if batch > 1 and len(clips) > 1:
            texts = [t.text for t in model.transcribe_batch([a for a, _ in clips], options)]
        else:
            texts = [model.transcribe(a, options).text for a, _ in clips]
        elapsed = time.perf_counter() - start
        cer = score(
            [normalize_text(r) for _, r in clips], [normalize_text(t) for t in texts], "cer"
        )
        out[name] = {"rtf": elapsed / audio_seconds, "seconds": elapsed, "audio": audio_seconds,
                     "cer": cer, "text": texts[0][:40]}  # fmt: skip
    out["peak_rss_mb"] = peak_rss_mb()
    out["model_mb"] = model_file(model).stat().st_size / 1e6
    return out


def _prepare_models() -> None:
    """Convert the whisper.cpp models once (into the cache), outside any timing."""
    from whisper_finetune.models.resolve import resolve_ggml

    for quantization in sorted({c[2] for c in CONFIGS if c[1] == "whispercpp"}):
        resolve_ggml("embedded:whisper-base", quantization)


def print_table(rows: dict, sets: list[str], args) -> None:
    print(
        f"\nwhisper-base, {THREADS} CPU threads; RTF = processing s / audio s (lower is faster)\n"
    )
    header = "| configuration |"
    for name in sets:
        header += f" {name} RTF | speed-up | CER |"
    print(header + " peak RSS (MB) | model file (MB) |")
    print("|---" * (1 + 3 * len(sets) + 2) + "|")
    order = [c[0] for c in CONFIGS]
    for label, row in sorted(rows.items(), key=lambda item: order.index(item[0])):
        if "error" in row:
            print(f"| {label} | failed: {row['error'][:80]} |")
            continue
        beam = 5 if "beam 5" in label else 1
        line = f"| {label} |"
        for name in sets:
            r = row.get(name)
            if r is None:
                line += " - | - | - |"
                continue
            ref = next((rows[k].get(name) for k in (
                "transformers fp32 beam 5" if beam == 5 else "transformers fp32 greedy",
                "transformers fp32 greedy") if k in rows and name in rows[k]), None)  # fmt: skip
            speedup = f"{ref['rtf'] / r['rtf']:.1f}x" if ref else "-"
            line += f" {r['rtf']:.3f} | {speedup} | {r['cer']:.3f} |"
        print(line + f" {row['peak_rss_mb']:.0f} | {row['model_mb']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=SETS)
    parser.add_argument("--configs", nargs="*", default=None, help="labels to run (default: all)")
    parser.add_argument("--skip", nargs="*", default=[], help="LABEL:SET pairs to leave out")
    parser.add_argument(
        "--long_seconds",
        type=float,
        default=None,
        help="the long clip: the first shipped clips reaching this (default: all 48, 420 s)",
    )
    parser.add_argument("--synth_dir", default=str(REPO / "data" / "bench-synth"))
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.sets, args)))
        return
    if "long" in args.sets and args.long_seconds is not None:
        try:  # before any worker starts: a length the clips do not reach is refused here
            long_clip(args.long_seconds)
        except ValueError as exc:
            parser.error(str(exc))
    _prepare_models()
    labels = args.configs or [c[0] for c in CONFIGS]
    rows = {}
    if args.configs and args.json and Path(args.json).is_file():  # re-run these rows only
        known = {c[0] for c in CONFIGS}
        rows = {k: v for k, v in json.loads(Path(args.json).read_text()).items() if k in known}
    for label in labels:
        sets = [s for s in args.sets if f"{label}:{s}" not in args.skip]
        cmd = [sys.executable, __file__, "--worker", label, "--sets", *sets,
               "--synth_dir", args.synth_dir]  # fmt: skip
        if args.long_seconds is not None:
            cmd += ["--long_seconds", str(args.long_seconds)]
        print(f"running {label} on {sets} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        rows[label] = json.loads(line[7:]) if line else {"error": proc.stderr[-300:]}
        print(f"  {json.dumps(rows[label])[:300]}", file=sys.stderr, flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    print_table(rows, args.sets, args)


if __name__ == "__main__":
    main()
