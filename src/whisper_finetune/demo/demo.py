"""The end-to-end demo: the whole road, offline, on 2 CPU cores, in one command.

``whisper-finetune demo`` (the README's first command) runs, with the embedded
whisper-base and the built-in synthetic Mandarin corpus unless told otherwise:

1. **corpus**: ``prepare synth-mandarin`` (HSK sentences spoken by espeak-ng): train,
   a dev split that chooses (``--num_dev``), a test split that is only reported;
2. **pack**: training utterances packed into <=30 s windows (Whisper pads every input to
   30 s, so packing divides the encoder's cost per utterance by about 7);
3. **baseline**: CER of the base model with CTranslate2 int8 (beam 5) on the test split
   and the guard set, and with transformers fp32 (greedy) on the guard set;
4. **finetune**: LoRA on the encoder and the decoder, in bf16 where the CPU has it
   (``--anchor`` adds a term that keeps the model near the base; off by default, see
   ``benchmarks/forgetting.py``), with the dev set scored every ``eval_steps`` for the
   CER-against-time curve (and the guard set too with ``--guard_curve``);
5. **merge**: the last checkpoint (``--merge_checkpoints=all``: every saved one) merged
   at the weights of ``--merge_scales``
   (``--scale_part``: the decoder's adapters, the encoder's kept whole), each scored with
   CTranslate2 on the guard set and the dev set (the trade-off curve), and the merge
   chosen by both bounds (guard change within ``guard_max_increase``, dev CER within
   ``target_cer``), else the one that forgets least at the target
   (:func:`~whisper_finetune.demo.measure.choose_merge`). The guard set is the
   package's 48 real clips (``real-dev``, ``test.wav`` and ``real-zh-dev``;
   ``docs/forgetting-guard.md``), scored with numerals normalised; nothing trains on
   them, and the report gives its change per source kind;
6. **evaluate**, **convert** to CTranslate2 int8, **evaluate** again;
7. **report**: ``report.md`` with tables, PNG plots, per-utterance results, and a
   one-screen summary.

With ``--train_data``/``--test_data`` (``--dev_data``, ``--base_model``) the same road
runs on a user's manifests and model.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
from dataclasses import asdict
from pathlib import Path

from whisper_finetune.demo.measure import backends, choose_merge, measure, search_merges
from whisper_finetune.demo.recipe import (
    PACKAGE_GUARD,
    DemoConfig,
    Stages,
    build_data,
    resolve_guard_data,
    training_config,
)
from whisper_finetune.demo.report import Report

logger = logging.getLogger(__name__)

__all__ = ["DemoConfig", "run_demo"]

TEST_SET = "synthetic-test"
GUARD_SET = "real-speech"


def _relative(path: str | Path, root: Path) -> str:
    """``path`` relative to the run folder when inside it, else as given (package data by name)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(root.resolve()))
    except ValueError:
        package = Path(__file__).resolve().parents[1]
        return (
            f"<whisper_finetune>/{p.relative_to(package)}"
            if p.is_relative_to(package)
            else str(path)
        )


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in (
        "whisper-finetune",
        "torch",
        "transformers",
        "peft",
        "ctranslate2",
        "faster-whisper",
    ):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(out)


def _settings(
    cfg: DemoConfig, out: Path, train_cfg, dev_data: str, test_data: str
) -> dict[str, object]:
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("output_dir", "overwrite")}
    settings.update(train_data=train_cfg.train_data, dev_data=dev_data, test_data=test_data)
    for key in ("train_data", "dev_data", "test_data", "guard_data"):
        if settings.get(key):
            settings[key] = _relative(settings[key], out)
    settings.update(
        precision=train_cfg.precision,
        cpu=cpu_model(),
        versions=_versions(),
        python=platform.python_version(),
    )
    return settings


def guarded_merge(cfg: DemoConfig, report: Report, out: Path, result, dev_data: str):
    """Choose the checkpoint and merge scale (:func:`~whisper_finetune.demo.measure.search_merges`
    and :func:`~whisper_finetune.demo.measure.choose_merge`), record the trade-off curve and
    why the merge was chosen, and move it to ``out/merged``.

    Returns ``(scale, adapter, merged)``."""
    from whisper_finetune.data.manifest import read_manifest, write_manifest
    from whisper_finetune.training.checkpoints import complete_checkpoints

    _, ct2 = backends(cfg)
    baseline = report.guard_clips[("base", ct2.label)]
    checkpoints = cfg.merge_candidates(
        complete_checkpoints(result.output_dir) or [Path(result.final_dir)]
    )
    dev = out / "scales" / "dev.jsonl"
    write_manifest(list(read_manifest(dev_data))[: cfg.eval_samples or None], dev)
    points = search_merges(checkpoints, cfg.guard_data, baseline, cfg, out / "scales", str(dev))
    chosen, why = choose_merge(points, cfg)
    part = (
        "the decoder's adapters, the encoder's whole"
        if cfg.scale_part == "decoder"
        else "the whole adapter"
    )
    report.tradeoff = [
        {
            "checkpoint": _relative(p.checkpoint, out),
            "scale": p.scale,
            "guard_cer": p.guard_cer,
            "guard_change": p.interval.difference,
            "guard_low": p.interval.low,
            "guard_high": p.interval.high,
            "guard_kept": p.kept,
            "dev_cer": p.dev_cer,
            "chosen": p is chosen,
        }
        for p in points
    ]
    report.notes.append(
        f"merges tried ({part}; {ct2.label}, beam {cfg.beam_size}; guard change against the base's "
        f"{baseline.value:.3f}, allowed +{cfg.guard_max_increase} on the {cfg.guard_rule}; "
        f"dev target {cfg.target_cer}): "
        + "; ".join(
            f"{_relative(p.checkpoint, out)} at {p.scale:.2f} -> guard {p.guard_cer:.3f} "
            f"({p.interval.describe()}, {'kept' if p.kept else 'broken'}), dev {p.dev_cer:.3f}"
            for p in points
        )
    )
    by_dev = _relative(result.best_checkpoint, out) if result.best_checkpoint else "-"
    report.notes.append(
        f"merge used: {_relative(chosen.checkpoint, out)} at scale {chosen.scale:.2f} ({why}; "
        f"the dev set alone during training preferred {by_dev})"
    )
    report.settings["checkpoint"] = _relative(chosen.checkpoint, out)
    shutil.rmtree(out / "merged", ignore_errors=True)
    shutil.move(str(chosen.merged), out / "merged")
    for p in points:
        if p is not chosen:
            shutil.rmtree(p.merged, ignore_errors=True)
    return chosen.scale, chosen.checkpoint, out / "merged"


def run_demo(cfg: DemoConfig) -> Report:
    """Run the whole road; see the module docstring. Returns the report (also written).

    Raises:
        whisper_finetune.staging.UnsafeOutputError: another run writes ``output_dir``.
    """
    from whisper_finetune.staging import output_lock

    with output_lock(cfg.output_dir):  # one writer per folder (issue 27.4)
        return _run_demo(cfg)


def _run_demo(cfg: DemoConfig) -> Report:
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.demo.report import summary_text, write_report
    from whisper_finetune.models.convert import convert_to_ct2
    from whisper_finetune.staging import check_replaceable, write_marker
    from whisper_finetune.training.callbacks import TrainClock
    from whisper_finetune.training.merge import merge_adapter
    from whisper_finetune.training.train import finetune

    out = Path(cfg.output_dir)
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite or another --output_dir")
        guard = None if cfg.guard_data == PACKAGE_GUARD else cfg.guard_data
        inputs = (cfg.base_model, cfg.train_data, cfg.dev_data, cfg.test_data, guard)
        check_replaceable(out, kind="demo", sources=inputs, what="--output_dir")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_marker(out, "demo")  # a later --overwrite recognises the folder as a demo's
    cfg = resolve_guard_data(cfg, out)
    stages = Stages()
    report = Report(title="whisper-finetune demo")
    train_data, dev_data, test_data = build_data(cfg, out, stages)
    datasets = {TEST_SET: ("synthetic test split", test_data)}
    if cfg.guard_data:
        datasets[GUARD_SET] = ("real speech (guard)", cfg.guard_data)
        report.notes.append(
            f"guard set: {_relative(cfg.guard_data, out)} (real speech, {len(read_manifest(cfg.guard_data))} "
            "clips; it limits the merge, so its 'after' "
            "figure is not an independent test; nothing trains on it)"
        )
    else:
        report.notes.append("no guard set: forgetting was not measured and no guard was used")
        logger.warning(report.notes[-1])
    report.notes.append(
        f"dev set: {_relative(dev_data, out)} (its first {cfg.eval_samples} clips are scored "
        f"during training and choose the merge); test split: {_relative(test_data, out)} "
        + (
            "(only reported: nothing chose by it)"
            if dev_data != test_data
            else "(it is also the dev set: pass --dev_data for a held-out figure)"
        )
    )
    hf, ct2 = backends(cfg)
    train_cfg = training_config(cfg, out / "train", train_data, dev_data)
    report.settings = _settings(cfg, out, train_cfg, dev_data, test_data)

    report.notes.append(
        f"decoding: {ct2.label} at beam {ct2.beam_size} (the guard and the target are judged "
        f"with it), {hf.label} at beam {hf.beam_size}; numerals normalised, punctuation "
        "removed, traditional to simplified"
    )
    with stages("baseline"):
        measure(report, "base", cfg.base_model, datasets, out / "eval", cfg, (ct2,))
        # transformers: the guard set only; on the synthetic split the base model loops on
        # nearly every clip (CER above 1), which cost 200 of the 2026-12-05 demo's 1,594 s
        # with robust decoding's retries, to say what CTranslate2's figure already says
        real = {k: v for k, v in datasets.items() if k == GUARD_SET}
        if real:
            measure(report, "base", cfg.base_model, real, out / "eval", cfg, (hf,))
    report.notes.append(
        f"not measured: the base model with {hf.label} on the synthetic split (it loops "
        f"there; {ct2.label}'s figure is its baseline)"
    )

    clock = TrainClock()
    with stages("finetune"):
        result = finetune(train_cfg, callbacks=[clock])
    state = Path(result.output_dir) / "trainer_state.json"
    report.log_history = json.loads(state.read_text())["log_history"] if state.is_file() else []
    report.curve = clock.points
    report.settings["training_seconds"] = f"{clock.seconds:.0f}"
    with stages("merge"):
        scale, adapter, merged = 1.0, result.final_dir, None
        if cfg.guard_data and cfg.method != "full":
            scale, adapter, merged = guarded_merge(cfg, report, out, result, dev_data)
        elif result.best_checkpoint:
            report.notes.append(
                f"checkpoint used: {_relative(result.best_checkpoint, out)} (best by the dev set's CER)"
            )
        if cfg.method == "full":
            merged = result.final_dir
        elif merged is None:
            # the demo keeps Whisper's published alignment heads: choosing them again
            # costs minutes on a CPU and did not beat them (docs/after-finetuning.md)
            merged = merge_adapter(
                str(adapter),
                out / "merged",
                overwrite=True,
                alignment_heads=False,
                **cfg.merge_weights(scale),
            )
    report.settings["merge_scale"] = f"{scale:.2f}"
    with stages("convert"):
        ct2_dir = convert_to_ct2(
            merged,
            out / f"ct2-{cfg.quantization}",
            quantization=cfg.quantization,
            force=True,
            verify=False,
        )
    with stages("evaluate"):
        measure(report, "fine-tuned", str(merged), datasets, out / "eval", cfg, (hf,))
        measure(report, "fine-tuned", str(ct2_dir), datasets, out / "eval", cfg, (ct2,))
    report.stage_seconds = stages.seconds
    write_report(report, out / "report")
    print(summary_text(report))
    print(f"\nreport: {out / 'report' / 'report.md'}")
    return report
