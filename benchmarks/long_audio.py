"""Where the time goes on long audio, and which CPU setting is fastest at the same CER.

On the benchmark's long clip (the shipped real recordings end to end, >= 5 min), with
whisper-base and 2 threads:

1. CTranslate2 int8, batched pipeline: the time of Silero VAD, of feature extraction
   (log-mel per chunk), of the encoder (all chunks, in batches) and of the rest (decoding,
   timestamp splitting), each timed on its own, against the pipeline's whole run.
2. whisper.cpp: its own timings (mel, encode, decode, batched decode, prompt) for one run.
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
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    from whisper_finetune.inference.ct2 import CT2Transcriber
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.models.resolve import resolve_model

    path = resolve_model("embedded:whisper-base", "ct2")
    batched = CT2Transcriber(path, "cpu", "int8", cpu_threads=THREADS, batch_size=8)
    model = batched.model
    options = DecodeOptions(language="zh")
    batched.transcribe(audio[:SR], options)  # warm-up
    vad_options = VadOptions(max_speech_duration_s=30, min_silence_duration_ms=160)
    spans, t_vad = _timed(lambda: get_speech_timestamps(audio, vad_options))
    chunks, _ = collect_chunks(audio, spans, max_duration=30)
    feats, t_feat = _timed(
        lambda: [pad_or_trim(model.feature_extractor(c)[..., :-1]) for c in chunks]
    )
    stacked = np.stack(feats).astype(np.float32)

    def encode_all():
        for i in range(0, len(stacked), 8):
            model.encode(stacked[i : i + 8])

    _, t_enc = _timed(encode_all)
    result, t_total = _timed(lambda: batched.transcribe(audio, options))
    seconds = audio.size / SR
    profile = {
        "chunks": len(chunks),
        "total_s": t_total,
        "vad_s": t_vad,
        "features_s": t_feat,
        "encoder_s": t_enc,
        "decoder_and_rest_s": t_total - t_vad - t_feat - t_enc,
        "rtf": t_total / seconds,
        "cer": _cer(reference, result.text),
    }
    return profile


def settings_ct2(audio: np.ndarray, reference: str) -> dict:
    from whisper_finetune.inference.ct2 import CT2Transcriber
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.models.resolve import resolve_model

    path = resolve_model("embedded:whisper-base", "ct2")
    rows = {}
    candidates = [
        ("ct2 int8 sequential", 1, {}),
        ("ct2 int8 batched 8", 8, {}),
        ("ct2 int8 batched 8, no timestamps", 8, {"without_timestamps": True}),
        ("ct2 int8 batched 16, no timestamps", 16, {"without_timestamps": True}),
    ]
    for label, batch, extra in candidates:
        model = CT2Transcriber(path, "cpu", "int8", cpu_threads=THREADS, batch_size=batch)
        options = DecodeOptions(language="zh", **extra)
        model.transcribe(audio[:SR], options)
        if batch == 1:  # sequential decoding: force the non-batched path
            result, elapsed = _timed(lambda m=model, o=options: m._transcribe(audio, o, False))
        else:
            result, elapsed = _timed(lambda m=model, o=options: m.transcribe(audio, o))
        rows[label] = {"rtf": elapsed / (audio.size / SR), "cer": _cer(reference, result.text)}
        print(label, rows[label], file=sys.stderr, flush=True)
    return rows


def whispercpp(audio: np.ndarray, reference: str) -> dict:
    import _pywhispercpp as pw  # noqa: F401  (loaded by the backend below)

    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.models import ggml_check

    rows = {}
    for quantization in ("q8_0", "q5_0"):
        model = load_transcriber(
            "embedded:whisper-base", "whispercpp", compute_type=quantization, cpu_threads=THREADS
        )
        options = DecodeOptions(language="zh")
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
        rows[f"whisper.cpp {quantization} sequential"] = {
            "rtf": elapsed / (audio.size / SR),
            "cer": _cer(reference, result.text),
            "total_s": elapsed,
            **timings,
        }
        print(quantization, rows[f"whisper.cpp {quantization} sequential"], file=sys.stderr)
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
    print(f"\nlong clip: {results['ct2']['audio_s']:.0f} s; ct2 int8 batched (8): {p['chunks']} chunks")
    print("| stage | seconds | share |\n|---|---|---|")
    for key in ("vad_s", "features_s", "encoder_s", "decoder_and_rest_s"):
        print(f"| {key[:-2]} | {p[key]:.2f} | {p[key] / p['total_s']:.0%} |")
    print(f"| total | {p['total_s']:.2f} | RTF {p['rtf']:.3f}, CER {p['cer']:.3f} |")
    base = results["ct2"]["ct2 int8 sequential"]["cer"]
    print("\n| setting | RTF | CER | CER - sequential |\n|---|---|---|---|")
    for engine in results.values():
        for label, row in engine.items():
            if isinstance(row, dict):
                print(f"| {label} | {row['rtf']:.3f} | {row['cer']:.3f} | {row['cer'] - base:+.3f} |")
    wc = results["whispercpp"].get("whisper.cpp q5_0 sequential", {})
    print("\nwhisper.cpp q5_0 timings (s): " + ", ".join(
        f"{k[:-2]} {v:.2f}" for k, v in wc.items() if k.endswith("_s")))  # fmt: skip


if __name__ == "__main__":
    main()
