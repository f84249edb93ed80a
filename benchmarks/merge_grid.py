"""The learning/forgetting trade-off of a finished demo run, point by point.

Merges checkpoints of a demo run (``whisper-finetune demo --output_dir RUN``) at chosen
weights of the encoder's and the decoder's adapters, converts each merge to CTranslate2
and scores it the way the demo's guard does (``DemoConfig``'s backend, beam and token
cap; numerals normalised) on the run's guard set and its whole synthetic test split. The
base model is scored first, so every change is against the same run's baseline, with its
95% paired-bootstrap interval over clips. One line of JSON per point goes to ``--output``
(appended: an interrupted grid resumes by listing only the missing points), and a table to
stdout.

It trains nothing: what it answers is which merges of one training run meet both bounds
(synthetic split <= 0.10, real speech within +0.01 of the base), which the demo's search
(:func:`whisper_finetune.demo.measure.search_merges`) walks with the decoder's weight only.

Usage (about a minute a point on 2 cores at beam 5)::

    python benchmarks/merge_grid.py --run runs/demo --output runs/demo/grid.jsonl \\
        --points 80:1:1 80:1:0.5 80:0.7:0.5 40:1:0.5

A point is ``STEP:ENCODER_WEIGHT:DECODER_WEIGHT`` (``checkpoint-STEP`` of the run).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

from whisper_finetune.demo.measure import (
    GuardResult,
    backends,
    evaluate_model,
    guard_verdict,
    trial_merge,
)
from whisper_finetune.demo.recipe import DemoConfig
from whisper_finetune.models.convert import convert_to_ct2
from whisper_finetune.models.resolve import resolve_model


def parse_point(text: str) -> tuple[int, float, float]:
    """``"80:1:0.5"`` -> ``(80, 1.0, 0.5)``."""
    try:
        step, encoder, decoder = text.split(":")
        point = int(step), float(encoder), float(decoder)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a point is STEP:ENCODER_WEIGHT:DECODER_WEIGHT (e.g. 80:1:0.5), got {text!r}"
        ) from None
    if not all(0.0 <= w <= 1.0 for w in point[1:]):
        raise argparse.ArgumentTypeError(f"weights must lie in [0, 1], got {text!r}")
    return point


def score(model: str, cfg: DemoConfig, guard: str, test: str, work: Path):
    """``(guard report, test report, seconds)`` of ``model`` with the guard's backend."""
    _, ct2 = backends(cfg)
    start = time.perf_counter()
    g, t = evaluate_model(model, ct2, {work / "guard": guard, work / "test": test}, cfg)
    return g, t, time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a demo's --output_dir")
    parser.add_argument("--points", nargs="+", type=parse_point, required=True)
    parser.add_argument("--output", required=True, help="JSON lines, appended")
    parser.add_argument("--beam_size", type=int, default=DemoConfig.beam_size)
    parser.add_argument("--guard_data", help="default: the run's guard/real-speech.jsonl")
    parser.add_argument("--test_data", help="default: the run's corpus/test.jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    run = Path(args.run)
    guard = Path(args.guard_data or run / "guard" / "real-speech.jsonl")
    test = Path(args.test_data or run / "corpus" / "test.jsonl")
    for path in (guard, test):
        if not path.is_file():
            raise SystemExit(f"{path} is missing: --run must be a finished demo's output_dir")
    settings = json.loads((run / "train" / "finetune_config.json").read_text())
    cfg = replace(DemoConfig(), base_model=settings["base_model"], beam_size=args.beam_size)
    work = run / "grid"
    rows = []
    with open(args.output, "a", encoding="utf-8") as out:

        def emit(row: dict) -> None:
            rows.append(row)
            print(json.dumps(row), file=out, flush=True)

        base_ct2 = convert_to_ct2(
            resolve_model(cfg.base_model),
            work / "base-ct2",
            quantization=cfg.quantization,
            force=True,
            verify=False,
        )
        g, t, seconds = score(str(base_ct2), cfg, str(guard), str(test), work / "eval-base")
        base = GuardResult.of(g)
        emit({"point": "base", "guard": g.value, "synthetic": t.value, "seconds": seconds})
        for step, encoder, decoder in args.points:
            adapter = run / "train" / f"checkpoint-{step}"
            if not adapter.is_dir():
                saved = sorted(p.name for p in (run / "train").glob("checkpoint-*"))
                raise SystemExit(f"{adapter} is missing (the run saved: {saved})")
            start = time.perf_counter()
            name = f"{step}-{encoder:g}-{decoder:g}"
            merged, (g, t) = trial_merge(
                str(adapter),
                work / name,
                {"guard": str(guard), "test": str(test)},
                cfg,
                scale=encoder,
                decoder_scale=decoder,
            )
            shutil.rmtree(merged, ignore_errors=True)  # a few hundred MB a point
            _, change = guard_verdict(base, GuardResult.of(g), cfg)
            emit(
                {
                    "point": name,
                    "checkpoint": step,
                    "encoder": encoder,
                    "decoder": decoder,
                    "guard": g.value,
                    "guard_change": change.difference,
                    "guard_low": change.low,
                    "guard_high": change.high,
                    "synthetic": t.value,
                    "seconds": time.perf_counter() - start,
                }
            )
    print(f"{'point':<14} {'synthetic':>9} {'guard':>7} {'change (95%)':>28}")
    for row in rows:
        change = (
            f"{row['guard_change']:+.4f} ({row['guard_low']:+.4f} to {row['guard_high']:+.4f})"
            if "guard_change" in row
            else ""
        )
        print(f"{row['point']:<14} {row['synthetic']:>9.3f} {row['guard']:>7.3f} {change:>28}")
    return rows


if __name__ == "__main__":
    main()
