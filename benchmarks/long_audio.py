"""Where the time goes on long audio, and which CPU setting is fastest at the same CER.

On the benchmark's long clip (the shipped real recordings end to end, >= 5 min), with
whisper-base and 2 threads:

1. CTranslate2 int8, the default for long audio on a CPU (batched pipeline over one-thread
   replicas): the wall time of Silero VAD, of feature extraction (log-mel per chunk), of
   the encoder and of the decoder calls, timed inside one run, and the rest.
2. whisper.cpp: its own timings (mel, encode, decode, batched decode, prompt) for one
   plain pass, and its robust decoding (the backend's default) timed.
3. Candidate settings, each timed once on the whole clip: real-time factor, CER against
   the reference, and CER difference from sequential (one-window-at-a-time) decoding.

    python benchmarks/long_audio.py [--long_seconds 300] [--json out.json]

Each engine runs in its own process (``--engine ct2`` / ``--engine whispercpp``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_speed import THREADS, long_clip  # noqa: E402

SR = 16000


def _cer(reference: str, text: str) -> float:
    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.text import normalize_text

    return score([normalize_text(reference)], [normalize_text(text)], "cer")


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def profile_ct2(audio: np.ndarray, reference: str) -> dict:
    """The default CPU path, timed stage by stage inside one run (wall time of each call)."""
    from collections import Counter

    from faster_whisper.feature_extractor import FeatureExtractor

    from whisper_finetune.inference import chunks
    from whisper_finetune.inference.ct2 import CT2Transcriber
    from whisper_finetune.inference.replicas import ReplicaSplit
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.models.resolve import resolve_model

    spent: Counter = Counter()

    def timing(name, fn):
        def timed(*args, **kwargs):
            result, elapsed = _timed(lambda: fn(*args, **kwargs))
            spent[name] += elapsed
            return result

        return timed

    # benchmark-only instrumentation of the calls the batched pipeline makes
    chunks.speech_spans = timing("vad_s", chunks.speech_spans)  # its parts run side by side
    FeatureExtractor.__call__ = timing("features_s", FeatureExtractor.__call__)
    ReplicaSplit.encode = timing("encoder_s", ReplicaSplit.encode)
    ReplicaSplit.generate = timing("decoder_s", ReplicaSplit.generate)

    path = resolve_model("embedded:whisper-base", "ct2")
    model = CT2Transcriber(path, "cpu", "int8", cpu_threads=THREADS, progress=False)
    if model.replicas < 2:
        raise SystemExit(f"the profile needs at least 2 CPU threads, got {model.replicas}")
    options = DecodeOptions(language="zh")
    model.transcribe(audio[: 70 * SR], options)  # warm-up: loads the replicas
    spent.clear()
    result, total = _timed(lambda: model.transcribe(audio, options))
    seconds = audio.size / SR
    return {
        "replicas": model.replicas,
        "batch": model.long_audio_batch,
        "total_s": total,
        **spent,
        "rest_s": total - sum(spent.values()),
        "rtf": total / seconds,
        "cer": _cer(reference, result.text),
    }


def settings_ct2(audio: np.ndarray, reference: str) -> dict:
    from whisper_finetune.inference import chunks
    from whisper_finetune.inference.ct2 import CT2Transcriber
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.models.resolve import resolve_model

    path = resolve_model("embedded:whisper-base", "ct2")
    rows = {}
    one = {"replicas": 1, "long_audio_batch": 8}
    one_pass = float("inf")  # VAD_PART_SECONDS: Silero in one pass, on one thread
    candidates = [
        ("ct2 int8 sequential", {"long_audio_batch": 1}, {}, None),
        ("ct2 int8 batched 8, one replica (the default before)", one, {}, one_pass),
        ("ct2 int8 default, VAD in one pass", {}, {}, one_pass),
        ("ct2 int8 default (batched, one-thread replicas, VAD in parts)", {}, {}, None),
        ("ct2 int8 default, no timestamps", {}, {"without_timestamps": True}, None),
    ]
    parts = chunks.VAD_PART_SECONDS
    for label, load, extra, vad_part in candidates:
        chunks.VAD_PART_SECONDS = vad_part or parts  # benchmark-only switch
        model = CT2Transcriber(path, "cpu", "int8", cpu_threads=THREADS, progress=False, **load)
        options = DecodeOptions(language="zh", **extra)
        model.transcribe(audio[: 70 * SR], options)  # warm-up
        result, elapsed = _timed(lambda m=model, o=options: m.transcribe(audio, o))
        rows[label] = {
            "rtf": elapsed / (audio.size / SR),
            "cer": _cer(reference, result.text),
            "replicas": model.replicas,
            "batch": model.long_audio_batch,
        }
        print(label, rows[label], file=sys.stderr, flush=True)
    return rows


def whispercpp(audio: np.ndarray, reference: str) -> dict:
    import _pywhispercpp as pw  # noqa: F401  (loaded by the backend below)

    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.models import ggml_check

    rows = {}
    runs = [
        (quantization, decoding, options)
        for quantization in ("q8_0", "q5_0")
        for decoding, options in (
            ("plain pass", DecodeOptions.plain(language="zh")),
            ("robust (the backend's default)", DecodeOptions(language="zh")),
        )
    ]
    for quantization, decoding, options in runs:
        model = load_transcriber(
            "embedded:whisper-base", "whispercpp", compute_type=quantization, cpu_threads=THREADS
        )
        model.transcribe(audio[:SR], options)
        model._pw.whisper_reset_timings(model._ctx)
        result, elapsed = _timed(lambda m=model, o=options: m.transcribe(audio, o))
        ggml_check._recent.clear()
        model._pw.whisper_print_timings(model._ctx)
        timings = {}
        for line in ggml_check._recent:
            found = re.search(r"(\w+) time =\s*([\d.]+) ms", line)
            if found:
                timings[found.group(1) + "_s"] = float(found.group(2)) / 1000
        label = f"whisper.cpp {quantization} sequential, {decoding}"
        rows[label] = {
            "rtf": elapsed / (audio.size / SR),
            "cer": _cer(reference, result.text),
            "total_s": elapsed,
            **timings,
        }
        print(label, rows[label], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long_seconds", type=float, default=300.0)
    parser.add_argument("--engine", choices=["ct2", "whispercpp"], help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.engine:
        audio, reference = long_clip(args.long_seconds)
        if args.engine == "ct2":
            out = {"profile": profile_ct2(audio, reference), **settings_ct2(audio, reference)}
        else:
            out = whispercpp(audio, reference)
        out["audio_s"] = audio.size / SR
        print("RESULT " + json.dumps(out))
        return
    results = {}
    for engine in ("ct2", "whispercpp"):
        cmd = [sys.executable, __file__, "--engine", engine, "--long_seconds", str(args.long_seconds)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{engine} failed:\n{proc.stderr[-3000:]}")
        results[engine] = json.loads(line[7:])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    p = results["ct2"].pop("profile")
    print(
        f"\nlong clip: {results['ct2']['audio_s']:.0f} s; ct2 int8 default: batches of "
        f"{p['batch']} over {p['replicas']} one-thread replicas"
    )
    print("| stage | seconds | share |\n|---|---|---|")
    for key in ("vad_s", "features_s", "encoder_s", "decoder_s", "rest_s"):
        print(f"| {key[:-2]} | {p.get(key, 0.0):.2f} | {p.get(key, 0.0) / p['total_s']:.0%} |")
    print(f"| total | {p['total_s']:.2f} | RTF {p['rtf']:.3f}, CER {p['cer']:.3f} |")
    base = results["ct2"]["ct2 int8 sequential"]["cer"]
    print("\n| setting | RTF | CER | CER - sequential |\n|---|---|---|---|")
    for engine in results.values():
        for label, row in engine.items():
            if isinstance(row, dict):
                print(f"| {label} | {row['rtf']:.3f} | {row['cer']:.3f} | {row['cer'] - base:+.3f} |")
    wc = results["whispercpp"].get("whisper.cpp q5_0 sequential, plain pass", {})
    print("\nwhisper.cpp q5_0 timings (s): " + ", ".join(
        f"{k[:-2]} {v:.2f}" for k, v in wc.items() if k.endswith("_s")))  # fmt: skip


if __name__ == "__main__":
    main()
