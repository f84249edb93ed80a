"""Inference speed of whisper-base: transformers vs CTranslate2, side by side in one run.

For each configuration (backend, compute type, beam size, batching) and each clip (the
real 8.4 s ``test.wav`` and a long clip of at least 60 s made of it), this prints the
real-time factor (processing seconds / audio seconds; lower is faster), the speed-up
over transformers at the same beam size, the CER against the reference, and the peak
resident memory of the process. Every configuration runs in a fresh subprocess, so peak
memory is its own; each is warmed up once on a 1 s clip, then timed on the clip.

    python benchmarks/inference_speed.py                 # the full table (~10 min on 2 cores)
    python benchmarks/inference_speed.py --quick         # test.wav only, skips beam 5 on transformers
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / "src" / "whisper_finetune" / "assets" / "real_speech"

# (label, backend, compute_type, beam_size, batch_size)
CONFIGS = [
    ("transformers fp32 greedy", "transformers", "float32", 1, 1),
    ("transformers fp32 beam 5", "transformers", "float32", 5, 1),
    ("ct2 float32 greedy", "ct2", "float32", 1, 1),
    ("ct2 float32 beam 5", "ct2", "float32", 5, 1),
    ("ct2 int8 greedy", "ct2", "int8", 1, 1),
    ("ct2 int8 beam 5", "ct2", "int8", 5, 1),
    ("ct2 int8 greedy batched (8, decodes VAD chunks)", "ct2", "int8", 1, 8),
]


def _clips(long_repeats: int) -> dict[str, tuple[np.ndarray, str]]:
    from whisper_finetune.data.audio import SAMPLE_RATE, load_audio

    reference = json.loads((SHARED / "test.json").read_text(encoding="utf-8"))[0]["sentence"]
    audio = load_audio(SHARED / "test.wav")
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    long = np.concatenate([np.concatenate([audio, pause])] * long_repeats)
    return {"test.wav": (audio, reference), f"long ({len(long) / SAMPLE_RATE:.0f} s)": (long, reference * long_repeats)}


def worker(label: str, clip_names: list[str], long_repeats: int) -> dict:
    """Run one configuration on the clips; returns timings, CER and peak memory."""
    import torch

    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.text import normalize_text

    _, backend, compute_type, beam, batch = next(c for c in CONFIGS if c[0] == label)
    if torch.cuda.is_available() and compute_type in ("float32", "int8"):
        # like for like on GPU: both backends in float16 (int8 rows: ct2's int8_float16)
        compute_type = "float16" if compute_type == "float32" else "int8_float16"
    model = load_transcriber("embedded:whisper-base", backend, compute_type=compute_type, cpu_threads=2, batch_size=batch)
    options = DecodeOptions.plain(language="zh", beam_size=beam)  # one pass: like for like
    clips = _clips(long_repeats)
    model.transcribe(clips["test.wav"][0][:16000], options)  # warm-up
    out = {}
    for name in clip_names:
        audio, reference = next(v for k, v in clips.items() if k.startswith(name))
        start = time.perf_counter()
        result = model.transcribe(audio, options)
        elapsed = time.perf_counter() - start
        cer = score([normalize_text(reference)], [normalize_text(result.text)], "cer")
        out[name] = {"rtf": elapsed / (len(audio) / 16000), "seconds": elapsed, "cer": cer, "text": result.text[:60]}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="test.wav only; no transformers beam 5")
    parser.add_argument("--long_repeats", type=int, default=7, help="copies of test.wav in the long clip")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--clips", nargs="*", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.clips, args.long_repeats)))
        return
    clip_names = ["test.wav"] if args.quick else ["test.wav", "long"]
    rows = {}
    for label, *_ in CONFIGS:
        if args.quick and label == "transformers fp32 beam 5":
            continue
        cmd = [sys.executable, __file__, "--worker", label, "--long_repeats", str(args.long_repeats), "--clips", *clip_names]
        print(f"running {label} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{label} failed:\n{proc.stderr[-3000:]}")
        rows[label] = json.loads(line[len("RESULT "):])
    long_name = next((k for k in _clips(args.long_repeats) if k.startswith("long")), "long")
    print(f"\nwhisper-base, 2 CPU threads; RTF = processing s / audio s (lower is faster); long clip = {long_name}\n")
    header = "| configuration |"
    for name in clip_names:
        header += f" {name} RTF | speed-up | CER |"
    print(header + " peak RSS (MB) |")
    print("|---" * (1 + 3 * len(clip_names) + 1) + "|")
    for label, row in rows.items():
        beam = 5 if "beam 5" in label else 1
        ref_label = "transformers fp32 beam 5" if beam == 5 else "transformers fp32 greedy"
        line = f"| {label} |"
        for name in clip_names:
            r = row[name]
            ref = rows.get(ref_label, {}).get(name)
            speedup = f"{ref['rtf'] / r['rtf']:.1f}x" if ref else "-"
            line += f" {r['rtf']:.3f} | {speedup} | {r['cer']:.3f} |"
        print(line + f" {row['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
