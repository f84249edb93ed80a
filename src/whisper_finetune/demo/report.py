"""The demo's report folder: Markdown tables, PNG plots and a one-screen summary.

Plots are drawn with matplotlib's Agg backend (no display needed):

- ``loss.png``: training loss (and eval loss / CER when logged) against optimizer steps;
- ``time-to-cer.png``: the dev set's and the guard set's CER against training seconds;
- ``cer.png``: CER before and after fine-tuning, per backend and test set;
- ``rtf.png``: real-time factor per model and backend;
- ``tradeoff.png``: every trial merge's guard change against its dev CER (the
  trade-off between learning the new domain and forgetting real speech).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from whisper_finetune.demo.tradeoff import plot_tradeoff, tradeoff_rows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """One evaluation: a model on a test set with one backend."""

    stage: str  # "base" or "fine-tuned"
    backend: str  # e.g. "transformers fp32", "ct2 int8"
    dataset: str  # e.g. "synthetic test", "test.wav"
    metric: str
    value: float
    n_utts: int
    rtf: float  # processing seconds per second of audio


@dataclass
class Report:
    """Everything the demo measured, in the order it happened."""

    title: str
    measurements: list[Measurement] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    log_history: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)
    # (stage, backend, clip, CER, hypothesis) for every clip of the guard set
    per_clip: list[tuple[str, str, str, float, str]] = field(default_factory=list)
    # {"step", "train_seconds", eval metrics or "loss"} points (training.callbacks.TrainClock)
    curve: list[dict] = field(default_factory=list)
    # (stage, backend, kind, clips, reference characters, CER) for the guard set per source kind
    per_kind: list[tuple[str, str, str, int, int, float]] = field(default_factory=list)
    # (stage, backend) -> the guard set's per-clip counts (demo.measure.GuardResult)
    guard_clips: dict[tuple[str, str], object] = field(default_factory=dict)
    # the trial merges ({"checkpoint", "scale", "guard_cer", "guard_change", "guard_low",
    # "guard_high", "guard_kept", "dev_cer", "chosen"}), in the order tried
    tradeoff: list[dict] = field(default_factory=list)

    def find(self, stage: str, backend: str, dataset: str) -> Measurement | None:
        for m in self.measurements:
            if (m.stage, m.backend, m.dataset) == (stage, backend, dataset):
                return m
        return None


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cer_table(report: Report) -> str:
    """Markdown: one row per backend and dataset, CER before and after."""
    rows = []
    keys = dict.fromkeys((m.backend, m.dataset, m.metric) for m in report.measurements)
    for backend, dataset, _metric in keys:
        base = report.find("base", backend, dataset)
        tuned = report.find("fine-tuned", backend, dataset)
        change = f"{tuned.value - base.value:+.3f}" if base and tuned else "-"
        rows.append(
            [
                dataset,
                backend,
                f"{base.value:.3f}" if base else "-",
                f"{tuned.value:.3f}" if tuned else "-",
                change,
                (tuned or base).n_utts,
            ]
        )
    metric = report.measurements[0].metric.upper() if report.measurements else "CER"
    return _table(
        ["test set", "backend", f"base {metric}", f"fine-tuned {metric}", "change", "utterances"],
        rows,
    )


def per_clip_table(report: Report) -> str:
    """Markdown: the guard set's CER per clip, per model and backend."""
    columns = list(dict.fromkeys((stage, backend) for stage, backend, *_ in report.per_clip))
    clips = list(dict.fromkeys(clip for _, _, clip, *_ in report.per_clip))
    value = {(stage, backend, clip): cer for stage, backend, clip, cer, _ in report.per_clip}
    rows = [
        [
            clip,
            *(f"{value[(s, b, clip)]:.3f}" if (s, b, clip) in value else "-" for s, b in columns),
        ]
        for clip in clips
    ]
    return _table(["clip", *(f"{s} {b}" for s, b in columns)], rows)


def per_kind_table(report: Report) -> str:
    """Markdown: the guard set's CER per source kind (read, spontaneous...), before and after."""
    columns = list(dict.fromkeys((stage, backend) for stage, backend, *_ in report.per_kind))
    kinds = {kind: (clips, chars) for _, _, kind, clips, chars, _ in report.per_kind}
    value = {(stage, backend, kind): cer for stage, backend, kind, _, _, cer in report.per_kind}
    rows = [
        [
            kind,
            clips,
            chars,
            *(f"{value[(s, b, kind)]:.3f}" if (s, b, kind) in value else "-" for s, b in columns),
        ]
        for kind, (clips, chars) in kinds.items()
    ]
    return _table(["kind", "clips", "characters", *(f"{s} {b}" for s, b in columns)], rows)


def guard_change_lines(report: Report) -> list[str]:
    """The guard set's CER change per backend, with its paired-bootstrap interval over clips."""
    from whisper_finetune.evaluation.metrics import paired_bootstrap

    lines = []
    for (stage, backend), tuned in report.guard_clips.items():
        base = report.guard_clips.get(("base", backend))
        if stage == "base" or base is None or len(base.clips) != len(tuned.clips):
            continue
        b = paired_bootstrap(base.clips, tuned.clips)
        lines.append(
            f"{backend}: {base.value:.3f} -> {tuned.value:.3f}, change {b.describe()} over "
            f"{len(base.clips)} clips; worse in {b.share_worse:.0%} of resamples"
        )
    return lines


def time_to_target(curve: list[dict], key: str = "eval_cer", target: float = 0.10) -> float | None:
    """Training seconds at the first evaluation whose ``key`` is at most ``target``."""
    for point in curve:
        if key in point and point[key] <= target:
            return point["train_seconds"]
    return None


def plot_curve(curve: list[dict], path: Path, target: float = 0.10) -> Path | None:
    """CER of the dev set (and the guard set) against training seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [p for p in curve if "eval_cer" in p]
    if not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(
        [p["train_seconds"] for p in evals],
        [p["eval_cer"] for p in evals],
        "o-",
        label="dev CER",
    )
    guard = [p for p in evals if "eval_guard_cer" in p]
    if guard:
        ax.plot(
            [p["train_seconds"] for p in guard],
            [p["eval_guard_cer"] for p in guard],
            "s--",
            label="guard CER (real speech)",
        )
    ax.axhline(target, color="grey", linestyle=":", label=f"CER {target}")
    reached = time_to_target(curve, target=target)
    if reached is not None:
        ax.axvline(reached, color="tab:green", linestyle=":", label=f"reached at {reached:.0f} s")
    ax.set_xlabel("training seconds (evaluation excluded)")
    ax.set_ylabel("CER")
    ax.set_title("Time to CER")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rtf_table(report: Report) -> str:
    rows = [[m.stage, m.backend, m.dataset, f"{m.rtf:.3f}"] for m in report.measurements]
    return _table(["model", "backend", "test set", "real-time factor"], rows)


def stage_table(report: Report) -> str:
    total = sum(report.stage_seconds.values())
    rows = [[k, f"{v:.0f}"] for k, v in report.stage_seconds.items()]
    rows.append(["**total**", f"{total:.0f}"])
    return _table(["stage", "seconds"], rows)


def plot_loss(log_history: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    cers = [(h["step"], h["eval_cer"]) for h in log_history if "eval_cer" in h]
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([s for s, _ in train], [v for _, v in train], label="train loss")
    if evals:
        ax.plot([s for s, _ in evals], [v for _, v in evals], "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if cers:
        ax2 = ax.twinx()
        ax2.plot(
            [s for s, _ in cers], [v for _, v in cers], "s--", color="tab:red", label="eval CER"
        )
        ax2.set_ylabel("CER")
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.set_title("Fine-tuning")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _grouped_bars(report: Report, path: Path, value, ylabel: str, title: str) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not report.measurements:
        return None
    groups = list(dict.fromkeys((m.dataset, m.backend) for m in report.measurements))
    stages = list(dict.fromkeys(m.stage for m in report.measurements))
    width = 0.8 / len(stages)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    for j, stage in enumerate(stages):
        heights = []
        for dataset, backend in groups:
            m = report.find(stage, backend, dataset)
            heights.append(value(m) if m else 0.0)
        xs = [i + j * width for i in range(len(groups))]
        bars = ax.bar(xs, heights, width, label=stage)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks([i + width * (len(stages) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels([f"{d}\n{b}" for d, b in groups], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: Report, out_dir: str | Path) -> Path:
    """Write ``report.md`` and the PNG plots into ``out_dir``; returns the Markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "loss": plot_loss(report.log_history, out_dir / "loss.png"),
        "time-to-cer": plot_curve(report.curve, out_dir / "time-to-cer.png"),
        "cer": _grouped_bars(
            report,
            out_dir / "cer.png",
            lambda m: m.value,
            "CER",
            "CER before and after fine-tuning",
        ),
        "rtf": _grouped_bars(
            report,
            out_dir / "rtf.png",
            lambda m: m.rtf,
            "real-time factor",
            "Speed (lower is faster)",
        ),
        "tradeoff": plot_tradeoff(
            report.tradeoff,
            out_dir / "tradeoff.png",
            report.settings.get("target_cer"),
            report.settings.get("guard_max_increase"),
        ),
    }
    parts = [f"# {report.title}", "", "## Error rates", "", cer_table(report), ""]
    changes = guard_change_lines(report)
    if changes:
        parts += (
            [
                "## Real speech (guard set): the change and its noise",
                "",
                "Paired bootstrap over clips (2,000 resamples): the interval is what the change could "
                "be on another draw of clips like these.",
                "",
            ]
            + [f"- {line}" for line in changes]
            + [""]
        )
    if report.per_kind:
        parts += ["## Real speech (guard set) per source kind", "", per_kind_table(report), ""]
    if report.per_clip:
        parts += ["## Real speech (guard set) per clip", "", per_clip_table(report), ""]
    if report.tradeoff:
        parts += [
            "## Trial merges: learning against forgetting",
            "",
            "The checkpoints tried (the last, or with --merge_checkpoints=all each saved one, "
            "newest first) merged at the scales tried (largest first), scored with the "
            "backend and beam of the guard; the bars of the plot are the guard change's 95% "
            "paired-bootstrap interval.",
            "",
            _table(*tradeoff_rows(report.tradeoff)),
            "",
        ]
    reached = time_to_target(report.curve)
    if report.curve:
        when = f"{reached:.0f} training seconds" if reached is not None else "not reached"
        parts += ["## Time to CER 0.10 (dev set, during training)", "", when, ""]
    parts += [
        "## Speed",
        "",
        rtf_table(report),
        "",
        "## Time per stage",
        "",
        stage_table(report),
        "",
    ]
    if report.settings:
        parts += [
            "## Settings",
            "",
            _table(["setting", "value"], [[k, v] for k, v in report.settings.items()]),
            "",
        ]
    if report.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    for name, p in plots.items():
        if p is not None:
            parts += [f"![{name}]({p.name})", ""]
    if report.tradeoff:
        (out_dir / "tradeoff.json").write_text(
            json.dumps(report.tradeoff, indent=1), encoding="utf-8"
        )
    md = out_dir / "report.md"
    md.write_text("\n".join(parts), encoding="utf-8")
    logger.info("report written to %s", md)
    return md


def summary_text(report: Report) -> str:
    """A one-screen plain-text summary for the terminal."""
    lines = [report.title, "=" * len(report.title)]
    for backend, dataset in dict.fromkeys((m.backend, m.dataset) for m in report.measurements):
        base = report.find("base", backend, dataset)
        tuned = report.find("fine-tuned", backend, dataset)
        left = f"{base.value:.3f}" if base else "  -  "
        right = f"{tuned.value:.3f}" if tuned else "  -  "
        rtf = (tuned or base).rtf
        lines.append(f"{dataset:<16} {backend:<18} {left} -> {right}   RTF {rtf:.3f}")
    lines += [f"real speech {line}" for line in guard_change_lines(report)]
    lines.append(f"total time {sum(report.stage_seconds.values()) / 60:.1f} min")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
