"""CER before and after robust decoding and equal padding, both backends, one run.

For each model (whisper-base, and a fine-tuned model when given) and each backend, this
scores the synthetic Mandarin test split and ``test.wav`` under:

* ``plain``: one greedy pass, no fallback, no thresholds, no VAD gate (the old default);
* ``robust``: Whisper's robust decoding (temperature fallback, compression-ratio,
  log-prob and no-speech thresholds) behind the Silero VAD gate (the new default);

and, on CTranslate2, with faster-whisper's own log-mel zero padding (``mel-pad``, the old
behaviour) or with the waveform padded to 30 s like transformers and training
(``wave-pad``, the new default). The "before" row of a backend is ``plain`` (+ ``mel-pad``
on ct2), the "after" row ``robust`` (+ ``wave-pad``).

    python benchmarks/padding_robust.py --synth_test data/synth-mandarin/test.jsonl \\
        --finetuned outputs/merged --max_clips 60 --output padding_robust.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def run(models: dict[str, str], synth_test: str, max_clips: int, threads: int) -> list[dict]:
    """Every model in its own process, side by side; rows in model order."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(models)) as pool:
        futures = [
            pool.submit(run_model, name, model, synth_test, max_clips, threads)
            for name, model in models.items()
        ]
        return [row for f in futures for row in f.result()]


def run_model(
    model_name: str, model: str, synth_test: str, max_clips: int, threads: int
) -> list[dict]:
    from whisper_finetune.assets import REAL_SPEECH_DIR
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.evaluation.evaluate import EvalConfig, evaluate
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions

    sets = {
        "synth": read_manifest(synth_test)[:max_clips],
        "test.wav": read_manifest(REAL_SPEECH_DIR / "test.json"),
    }
    decodes = {
        "plain": DecodeOptions.plain(language="zh"),
        "robust": DecodeOptions(language="zh"),
    }
    rows = []
    for backend in ("transformers", "ct2"):
        t = load_transcriber(model, backend, cpu_threads=threads)
        pads = ("mel-pad", "wave-pad") if backend == "ct2" else ("wave-pad",)
        for pad in pads:
            if backend == "ct2":
                t.pad_audio = pad == "wave-pad"
            for decode_name, decode in decodes.items():
                row = {
                    "model": model_name,
                    "backend": backend,
                    "padding": pad,
                    "decoding": decode_name,
                }
                for set_name, records in sets.items():
                    start = time.perf_counter()
                    report = evaluate(
                        t, records, EvalConfig(decode=replace(decode), progress=False)
                    )
                    row[set_name] = round(report.value, 4)
                    row[f"{set_name}_seconds"] = round(time.perf_counter() - start, 1)
                rows.append(row)
                print(json.dumps(row, ensure_ascii=False), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | backend | padding | decoding | synth CER | test.wav CER |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['padding']} | {r['decoding']} | "
            f"{r['synth']:.4f} | {r['test.wav']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--synth_test", required=True, help="the synthetic test manifest")
    parser.add_argument("--finetuned", default=None, help="a merged fine-tuned transformers folder")
    parser.add_argument("--max_clips", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    models = {"whisper-base": "embedded:whisper-base"}
    if args.finetuned:
        models["fine-tuned"] = args.finetuned
    rows = run(models, args.synth_test, args.max_clips, args.threads)
    if args.output:
        Path(args.output).write_text(
            json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8"
        )
    print(table(rows))


if __name__ == "__main__":
    main()
