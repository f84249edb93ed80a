"""benchmarks/tradeoff_methods.py: one trade-off line per training method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def script(benchmark_script):
    return benchmark_script("tradeoff_methods")


def _grid(path: Path, points: list[tuple[float, float, float]], encoder: float = 1.0) -> Path:
    """merge_grid.py's lines: the base, then (decoder weight, synthetic, guard change)."""
    rows = [{"point": "base", "guard": 0.12, "synthetic": 0.65, "seconds": 1.0}]
    for decoder, synthetic, change in points:
        rows.append(
            {"point": f"80-{encoder:g}-{decoder:g}", "checkpoint": 80, "encoder": encoder,
             "decoder": decoder,
             "guard": 0.12 + change, "guard_change": change, "guard_low": change - 0.02,
             "guard_high": change + 0.02, "synthetic": synthetic, "seconds": 60.0}
        )  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_each_method_is_one_line_through_its_weights(script, tmp_path, capsys):
    today = _grid(tmp_path / "today.jsonl", [(1.0, 0.098, 0.025), (0.5, 0.092, 0.011)])
    replay = _grid(tmp_path / "replay.jsonl", [(1.0, 0.098, -0.001)])
    stem = tmp_path / "out" / "methods"
    points = script.main(
        [f"today={today}", f"replay={replay}", "--output", str(stem), "--meta", '{"date": "x"}']
    )
    assert [(p["checkpoint"], p["scale"], p["guard_kept"]) for p in points] == [
        ("today", 1.0, False),
        ("today", 0.5, False),  # +0.011: past the guard's +0.01
        ("replay", 1.0, True),
    ]
    assert stem.with_suffix(".png").stat().st_size > 0
    saved = json.loads(stem.with_suffix(".json").read_text())
    assert saved["meta"] == {"date": "x"} and saved["points"] == points
    assert set(saved["base"]) == {"today", "replay"}
    table = capsys.readouterr().out
    assert "replay" in table and "-0.0010 (-0.0210 to +0.0190)" in table


def test_a_grid_without_its_base_or_a_bad_argument_is_refused(script, tmp_path):
    grid = tmp_path / "g.jsonl"
    grid.write_text(json.dumps({"point": "80-1-1"}) + "\n")
    with pytest.raises(SystemExit, match="g.jsonl: no base row"):
        script.main([f"today={grid}", "--output", str(tmp_path / "o")])
    weighed = _grid(tmp_path / "w.jsonl", [(1.0, 0.098, 0.01), (0.5, 0.12, 0.006)], encoder=0.7)
    with pytest.raises(SystemExit, match=r"w.jsonl: points \['80-0.7-1', '80-0.7-0.5'\] weigh"):
        script.main([f"today={weighed}", "--output", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="expected METHOD=GRID.jsonl, got 'today'"):
        script.main(["today", "--output", str(tmp_path / "o")])
