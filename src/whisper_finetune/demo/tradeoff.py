"""The trial merges of the demo's guarded search: learning against forgetting.

Each trial merge is a point (``demo.demo.guarded_merge`` records them as dicts:
``checkpoint``, ``scale``, ``guard_cer``, ``guard_change``, ``guard_low``, ``guard_high``,
``guard_kept``, ``dev_cer``, ``chosen``); this module draws them as the report's table
and ``tradeoff.png``.
"""

from __future__ import annotations

from pathlib import Path


def tradeoff_rows(points: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The report table's headers and rows: one row per trial merge, in the order tried."""
    rows = [
        [
            p["checkpoint"],
            f"{p['scale']:.2f}",
            f"{p['dev_cer']:.3f}",
            f"{p['guard_cer']:.3f}",
            f"{p['guard_change']:+.4f} ({p['guard_low']:+.4f} to {p['guard_high']:+.4f})",
            "kept" if p["guard_kept"] else "broken",
            "**chosen**" if p["chosen"] else "",
        ]
        for p in points
    ]
    return (
        [
            "checkpoint",
            "merge scale",
            "dev CER",
            "guard CER",
            "guard change (95%)",
            "guard",
            "",
        ],
        rows,
    )


def plot_tradeoff(
    points: list[dict],
    path: Path,
    target: float | None,
    allowed: float | None,
    xlabel: str = "dev CER (lower: learned more)",
    title: str = "Trial merges: learning against forgetting (labels: merge scale)",
    log_x: bool = False,
) -> Path | None:
    """Guard change against dev CER, one line per checkpoint (or any other group named
    in ``checkpoint``) through its scales."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for checkpoint in dict.fromkeys(p["checkpoint"] for p in points):
        mine = [p for p in points if p["checkpoint"] == checkpoint]
        ax.errorbar(
            [p["dev_cer"] for p in mine],
            [p["guard_change"] for p in mine],
            yerr=[
                [p["guard_change"] - p["guard_low"] for p in mine],
                [p["guard_high"] - p["guard_change"] for p in mine],
            ],
            fmt="o-",
            capsize=3,
            label=Path(checkpoint).name,
        )
        for p in mine:
            ax.annotate(f"{p['scale']:.2f}", (p["dev_cer"], p["guard_change"]), fontsize=8)
    for p in points:
        if p["chosen"]:
            ax.plot(p["dev_cer"], p["guard_change"], "k*", markersize=14, label="chosen")
    if allowed is not None:
        ax.axhline(allowed, color="grey", linestyle=":", label=f"guard +{allowed}")
    if target is not None:
        ax.axvline(target, color="tab:green", linestyle=":", label=f"target CER {target}")
    if log_x:  # points far apart along the CER axis (a method that barely learns)
        from matplotlib.ticker import FormatStrFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%.2f"))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("guard CER change vs base (lower: forgot less)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
