"""One trade-off curve per training method: real-speech change against synthetic CER.

Reads the JSON lines that ``benchmarks/merge_grid.py`` wrote for each method's run (the
same guard set, test split and points for all of them), and draws one line per method
through its merge weights (``tradeoff-methods.png``), with each point's 95%
paired-bootstrap interval, the guard's bound and the synthetic target; prints the table
and writes the points as one JSON file.

Usage::

    python benchmarks/tradeoff_methods.py --output docs/forgetting-tradeoff-methods \\
        today=runs/replay/grid-today.jsonl replay=runs/replay/grid-replay.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from whisper_finetune.demo.measure import guard_kept
from whisper_finetune.demo.recipe import DemoConfig
from whisper_finetune.demo.tradeoff import plot_tradeoff


def read_grid(method: str, path: Path) -> tuple[dict, list[dict]]:
    """``(base row, points)`` of one method's grid, points as the demo's trial merges
    (judged by the demo's default guard rule)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    bases = [r for r in rows if r["point"] == "base"]
    if not bases:
        raise SystemExit(f"{path}: no base row (merge_grid.py writes one first)")
    weighed = [r["point"] for r in rows if r["point"] != "base" and r["encoder"] != 1]
    if weighed:
        raise SystemExit(
            f"{path}: points {weighed} weigh the encoder's adapters; each line here runs "
            "through the decoder's weights (grid points STEP:1:DECODER_WEIGHT)"
        )
    cfg = DemoConfig()
    points = [
        {
            "checkpoint": method,
            "scale": r["decoder"],
            "point": r["point"],
            "dev_cer": r["synthetic"],
            "guard_cer": r["guard"],
            "guard_change": r["guard_change"],
            "guard_low": r["guard_low"],
            "guard_high": r["guard_high"],
            "guard_kept": guard_kept(r["guard_change"], r["guard_high"], cfg),
            "chosen": False,
        }
        for r in rows
        if r["point"] != "base"
    ]
    return bases[-1], points


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", nargs="+", metavar="METHOD=GRID.jsonl")
    parser.add_argument("--output", required=True, help="path stem: STEM.png and STEM.json")
    parser.add_argument("--meta", default="{}", help="a JSON object stored with the points")
    args = parser.parse_args(argv)
    points, bases = [], {}
    for item in args.grids:
        method, sep, path = item.partition("=")
        if not sep or not method or not path:
            raise SystemExit(f"expected METHOD=GRID.jsonl, got {item!r}")
        bases[method], mine = read_grid(method, Path(path))
        points += mine
    stem = Path(args.output)
    stem.parent.mkdir(parents=True, exist_ok=True)
    plot_tradeoff(
        points,
        stem.with_suffix(".png"),
        DemoConfig.target_cer,
        DemoConfig.guard_max_increase,
        xlabel="synthetic test split CER (lower: learned more)",
        title="One line per method through its decoder weights (labels: weight)",
        log_x=max(p["dev_cer"] for p in points) > 3 * min(p["dev_cer"] for p in points),
    )
    meta = json.loads(args.meta)
    stem.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "base": bases, "points": points}, indent=1) + "\n"
    )
    print(f"{'method':<14} {'weight':>6} {'synthetic':>9} {'real':>7} {'change (95%)':>28}")
    for p in points:
        change = f"{p['guard_change']:+.4f} ({p['guard_low']:+.4f} to {p['guard_high']:+.4f})"
        print(
            f"{p['checkpoint']:<14} {p['scale']:>6.2f} {p['dev_cer']:>9.3f} "
            f"{p['guard_cer']:>7.3f} {change:>28}"
        )
    return points


if __name__ == "__main__":
    main()
