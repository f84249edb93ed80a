"""GPU inference speed: CTranslate2 float16 / int8_float16 and transformers fp16, side by side.

For each shape (random weights of the real dimensions, the real tokenizer: the model
weights are not needed to time the engine) the audio is cut into 30 s windows and each
window is decoded for exactly as many tokens as a real transcript of it would have
(``--tokens_per_s`` of audio, Mandarin's rate by default; end-of-text is suppressed so that
random weights cannot stop early or run to 448). Clip sets: ``test.wav`` (8.4 s of real
Mandarin) and ``long`` (the shipped real clips end to end, repeated to ``--long_seconds``).

Reported per configuration and set: the real-time factor one window at a time
(processing seconds / audio seconds; lower is faster) and, for ``long``, the batched
throughput the server gets from ``--batch`` windows at once (audio seconds per second).
Each configuration runs in its own subprocess; a missing CUDA 12 library for CTranslate2
is that row's error, naming the fix (``whisper_finetune.cuda_libs``).

    python benchmarks/infer_gpu.py --out OUT                          # small, large-v3
    python benchmarks/infer_gpu.py --out OUT --shapes tiny --device cpu --long_seconds 40

Writes ``OUT/infer_gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_gpu  # noqa: E402  (the sibling benchmark: model shapes, environment)

CONFIGS = ("ct2 float16", "ct2 int8_float16", "transformers fp16")
SAMPLE_RATE, WINDOW = 16000, 30


def clip_sets(long_seconds: float) -> dict[str, np.ndarray]:
    from whisper_finetune.assets import real_speech_manifest, test_wav
    from whisper_finetune.data.audio import load_audio

    manifest = real_speech_manifest()
    rows = train_gpu.read_rows(Path(manifest))
    clips = [load_audio(manifest.parent / r["audio"]["path"]) for r in rows]
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    pieces, total = [], 0
    while total < long_seconds * SAMPLE_RATE:
        for clip in clips:
            pieces += [clip, pause]
            total += len(clip) + len(pause)
    return {"test.wav": load_audio(test_wav()), "long": np.concatenate(pieces)}


def windows(audio: np.ndarray) -> list[np.ndarray]:
    step = WINDOW * SAMPLE_RATE
    return [audio[i : i + step] for i in range(0, len(audio), step)]


def worker(spec: dict) -> dict:
    """One configuration on every clip set, in this process."""
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(spec["model"])
    tok = processor.tokenizer
    prompt = ["<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>"]
    prompt_ids = tok.convert_tokens_to_ids(prompt)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    backend, kind = spec["config"].split()
    device = spec["device"]
    if backend == "ct2":
        import ctranslate2

        from whisper_finetune.cuda_libs import require_ct2_cuda_libraries

        require_ct2_cuda_libraries(device)
        compute = kind if device == "cuda" else "int8" if "int8" in kind else "float32"
        model = ctranslate2.models.Whisper(spec["ct2"], device=device, compute_type=compute)

        def decode(feats: np.ndarray, n: int) -> None:
            x = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats))
            model.generate(
                x,
                [prompt] * len(feats),
                max_length=len(prompt) + n,
                suppress_tokens=[-1, eot],
                suppress_blank=False,
            )
    else:
        import torch
        from transformers import WhisperForConditionalGeneration

        dtype = torch.float16 if device == "cuda" else torch.float32
        model = WhisperForConditionalGeneration.from_pretrained(spec["model"], dtype=dtype)
        model = model.to(device).eval()

        def decode(feats: np.ndarray, n: int) -> None:
            x = torch.from_numpy(feats).to(device, dtype)
            ids = torch.tensor([prompt_ids] * len(feats), device=device)
            with torch.inference_mode():
                model.generate(
                    x,
                    decoder_input_ids=ids,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    num_beams=1,
                )
            if device == "cuda":
                torch.cuda.synchronize()

    sets = clip_sets(spec["long_seconds"])
    out = {}
    warm = processor.feature_extractor([sets["test.wav"]], sampling_rate=SAMPLE_RATE)
    decode(warm["input_features"].astype(np.float32), 4)
    for name, audio in sets.items():
        parts = windows(audio)
        n = [max(1, round(len(w) / SAMPLE_RATE * spec["tokens_per_s"])) for w in parts]
        t0 = time.perf_counter()
        for w, k in zip(parts, n, strict=True):
            f = processor.feature_extractor([w], sampling_rate=SAMPLE_RATE)["input_features"]
            decode(f.astype(np.float32), k)
        seconds = len(audio) / SAMPLE_RATE
        row = {"audio_s": round(seconds, 1), "rtf": round((time.perf_counter() - t0) / seconds, 4)}
        if name == "long":
            t0 = time.perf_counter()
            for i in range(0, len(parts), spec["batch"]):
                group = parts[i : i + spec["batch"]]
                f = processor.feature_extractor(group, sampling_rate=SAMPLE_RATE)
                decode(f["input_features"].astype(np.float32), max(n[i : i + spec["batch"]]))
            row["batched_audio_s_per_s"] = round(seconds / (time.perf_counter() - t0), 1)
            row["batch"] = spec["batch"]
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="results folder")
    p.add_argument("--shapes", nargs="+", default=["small", "large-v3"], choices=train_gpu.SHAPES)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--long_seconds", type=float, default=300.0)
    p.add_argument("--tokens_per_s", type=float, default=4.0, help="tokens decoded per audio s")
    p.add_argument("--batch", type=int, default=8, help="windows per batch (batched rows)")
    p.add_argument("--row_timeout", type=float, default=600.0)
    p.add_argument("--work", help="folder for the models, kept (train_gpu.py --work shares it)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        Path(a.result).write_text(json.dumps(worker(json.loads(a.worker))), encoding="utf-8")
        return 0
    if not a.out:
        p.error("--out is required")
    from whisper_finetune.models.convert import convert_to_ct2

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"environment": train_gpu.environment(a.device), "args": vars(a), "rows": []}
    with tempfile.TemporaryDirectory(prefix="infer-gpu-") as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for shape in a.shapes:
            model = train_gpu.build_model(shape, work / f"whisper-{shape}")
            ct2 = work / f"ct2-{shape}"
            if not (ct2 / "model.bin").is_file():
                convert_to_ct2(model, ct2, quantization="float16", force=True)
            for config in a.configs:
                spec = dict(vars(a), config=config, model=str(model), ct2=str(ct2))
                with tempfile.NamedTemporaryFile("r", suffix=".json", dir=tmp) as res:
                    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
                    cmd += ["--result", res.name]
                    try:
                        proc = subprocess.run(
                            cmd, capture_output=True, text=True, timeout=a.row_timeout
                        )
                        text = Path(res.name).read_text(encoding="utf-8")
                        if proc.returncode or not text:
                            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                            row = {"error": f"exit {proc.returncode}: " + " | ".join(tail)[-600:]}
                        else:
                            row = json.loads(text)
                    except subprocess.TimeoutExpired:
                        row = {"error": f"timed out after {a.row_timeout:g} s"}
                row = {"shape": shape, "config": config, **row}
                print(json.dumps(row), flush=True)
                report["rows"].append(row)
                (out / "infer_gpu.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
