"""Forgetting, measured: fine-tuning methods side by side on the same corpus and budget.

For each method the demo's recipe (corpus, packing, steps, batch, learning rate,
precision, guard set, merge guard) is run with only the method changed, and the script
prints, in one run: training seconds, the merge scale the guard chose, CER on the
synthetic test split and on the real-speech guard set, with transformers fp32 and
CTranslate2 int8, next to the base model's.

Methods:

* ``rank-32``: plain encoder-only LoRA of rank 32, learning rate 1e-3 for 60 steps (the
  demo's recipe until 2026-11-30).
* ``rank-8``: the same at rank 8 (the demo's recipe on 2026-11-30): fewer directions to move in.
* ``rank-8-lr-5e-4``: rank 8 at learning rate 5e-4 for 80 steps, a checkpoint every 40 (the
  demo's recipe on 2026-12-01 until the next): smaller steps. These three adapt the encoder only.
* ``all-layers``: the same on the encoder and the decoder, the guard's merge scale weighing the
  decoder's adapters only (the demo's recipe now).
* ``decoder``: the decoder only.
* ``feed-forward``: the encoder's feed-forward layers only.
* ``kd``: the demo's recipe trained with ``--anchor=kd`` (distillation toward the base model).
* ``l2``: the demo's recipe trained with ``--anchor=l2`` (penalty on the adapter's weight change).
* ``specaugment``: ``rank-8-lr-5e-4`` with SpecAugment (10% of frames, 5% of mel bins masked).
* ``today``: the demo's recipe as it stands (adapters on both halves, plain training).
* ``replay``: the demo's recipe with ``--replay_data``: real speech pseudo-labelled by the
  base model (``prepare pseudo-label``, greedy and beam 5 agreeing) mixed into every batch
  (``--replay_ratio``, 0.25 by default: one clip per batch of 4).
* ``replay-kd``: ``replay`` plus ``--anchor=kd --anchor_rows=replay``: distillation toward
  the base model on the replay rows only (the synthetic rows learn from their labels).
* ``replay-kd-all``: ``replay`` plus ``--anchor=kd`` on every row (the combination of both
  anchors of the old domain).
* ``prompts``: the demo's recipe with prompt-conditioned training (issue 26):
  ``--prompt_ratio=0.5`` and the training split's sentences as ``--prompt_file`` (1-5 of
  them before a sample, as the previous text of a long recording would be). Its
  ``merged-1.0`` and ``today``'s are the two fine-tunes ``benchmarks/prompt_conditioning.py``
  compares.

The replay methods need real audio that nothing scores: with any of them in ``--methods``
the 40 ``real-zh-dev`` clips are split by line, the even lines (20 clips: 15 FLEURS, 2
THCHS-30, AISHELL-3, whispered, one spontaneous) the replay pool, pseudo-labelled here
without their references, and the odd lines with the original eight (28 clips) the guard
and the real-speech figure of *every* method of that run, so all are measured on the same
clips. Without a replay method the guard is all 48 clips. Each method's real-speech change
is given with its paired-bootstrap interval over clips and per source kind
(``forgetting.json``).

The smallest comparison that answers whether replay helps (2 shared cores; about 15
minutes a method, kd a third more)::

    nice -n 5 python benchmarks/forgetting.py --output_dir runs/replay \
        --methods today replay replay-kd

Every method then goes through the demo's guarded merge: saved checkpoints merged at the
weights of ``--merge_scales``, each scored with CTranslate2 on the guard set and the dev
split, and the merge chosen by both bounds, else the one that forgets least at the target
(:func:`whisper_finetune.demo.demo.guarded_merge`).

Usage::

    python benchmarks/forgetting.py --output_dir runs/forgetting [--methods rank-32 rank-8 rank-8-lr-5e-4 kd l2]
        [--kd_weight 1.0] [--l2_weight 0.05] [--max_steps N] [--beam_size 1] [--parts]

``--parts`` also merges each part of an adapter alone (lower or upper encoder layers,
attention or feed-forward) at full scale and measures it with transformers.

``--curve N`` follows each method along its training instead: a checkpoint every N steps,
the test subset's and the guard's CER at each (adapter at full scale), and each checkpoint
merged at each of ``--curve_scales`` (weighing the adapters the method's ``scale_part``
names), measured with transformers on the whole split and the guard set (the README's rank
table)::

    python benchmarks/forgetting.py --output_dir runs/curve --methods rank-32 rank-8 --curve 15 \
        --curve_scales 1.0 0.7

``--cuts_of ADAPTER`` trains nothing: it merges an existing adapter's weight change cut
down in other ways than the merge scale (its top singular directions per matrix, or its
largest entries) and measures each with transformers on both sets::

    python benchmarks/forgetting.py --output_dir runs/cuts --cuts_of runs/demo/train/final

About 15 minutes a method on 2 quiet cores (kd costs a third more per step).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import torch

from whisper_finetune.demo.demo import guarded_merge
from whisper_finetune.demo.measure import backends, measure
from whisper_finetune.demo.recipe import DemoConfig, Stages, build_data, training_config
from whisper_finetune.demo.report import Report
from whisper_finetune.models.convert import convert_to_ct2
from whisper_finetune.training.callbacks import TrainClock
from whisper_finetune.training.checkpoints import complete_checkpoints
from whisper_finetune.training.merge import merge_adapter
from whisper_finetune.training.train import finetune

_OLD_SCHEDULE = {
    "learning_rate": 1e-3,
    "max_steps": 60,
    "eval_steps": 30,
}  # the recipe until 2026-12-01
_ENCODER = {"lora_layers": "encoder", "scale_part": "all"}  # the demo's adapters until 2026-12-01
METHODS = {  # name -> (anchor, DemoConfig changes, FinetuneConfig changes)
    "rank-32": ("none", {"lora_r": 32, **_ENCODER, **_OLD_SCHEDULE}, {}),
    "rank-8": ("none", {"lora_r": 8, **_ENCODER, **_OLD_SCHEDULE}, {}),
    "rank-8-lr-5e-4": ("none", {"lora_r": 8, **_ENCODER}, {}),
    "all-layers": ("none", {"lora_layers": "all", "scale_part": "decoder"}, {}),
    "decoder": ("none", {"lora_layers": "decoder", "scale_part": "decoder"}, {}),
    "feed-forward": ("none", _ENCODER, {"target_modules": ("fc1", "fc2")}),
    "kd": ("kd", {}, {}),
    "l2": ("l2", {}, {}),
    "specaugment": (
        "none",
        _ENCODER,
        {"apply_spec_augment": True, "mask_time_prob": 0.1, "mask_feature_prob": 0.05},
    ),
    "today": ("none", {}, {}),
    "replay": ("none", {}, {"replay": True}),
    "replay-kd": ("kd", {}, {"replay": True, "anchor_rows": "replay"}),
    "replay-kd-all": ("kd", {}, {"replay": True}),
    "prompts": ("none", {}, {"prompts": True}),
}
REPLAY = "replay"  # a METHODS override: train with the pseudo-labelled replay pool
# a METHODS override: prompt-conditioned training, the training sentences as phrases
PROMPTS = "prompts"
SETS = {"synthetic-test": "synthetic test split", "real-speech": "real speech (guard)"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default="runs/forgetting")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--kd_weight", type=float, default=1.0)
    parser.add_argument("--l2_weight", type=float, default=0.05)
    parser.add_argument(
        "--max_steps", type=int, default=None, help="every method's steps (default: its own)"
    )
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--beam_size",
        type=int,
        default=DemoConfig.beam_size,
        help="beam width of every evaluation, the guard's included (faster-whisper's default is 5)",
    )
    parser.add_argument(
        "--parts",
        action="store_true",
        help="also merge parts of each adapter (lower / upper layers, attention / "
        "feed-forward) at full scale: which part learns, which part forgets",
    )
    parser.add_argument(
        "--curve",
        type=int,
        metavar="N",
        help="checkpoint every N steps; merge each at --curve_scales and measure (no guarded merge)",
    )
    parser.add_argument("--curve_scales", type=float, nargs="+", default=[1.0])
    parser.add_argument(
        "--cuts_of",
        metavar="ADAPTER",
        help="only merge this adapter's weight change cut by rank or magnitude, and measure",
    )
    parser.add_argument(
        "--replay_ratio",
        type=float,
        default=0.25,
        help="replay clips per training clip in every batch (replay methods)",
    )
    parser.add_argument(
        "--prompt_ratio",
        type=float,
        default=0.5,
        help="share of training samples given a prompt (the prompts method)",
    )
    parser.add_argument(
        "--max_disagreement",
        type=float,
        default=0.1,
        help="pseudo-labels kept: greedy vs beam-5 CER at most this",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = DemoConfig(output_dir=str(out), precision=args.precision, beam_size=args.beam_size)
    replaying = any(REPLAY in METHODS[m][2] for m in args.methods)
    guard, pool = _real_sets(out / "real", split=replaying)
    cfg = replace(cfg, guard_data=str(guard))
    stages = Stages()
    train_data, dev_data, test_data = build_data(cfg, out, stages)
    replay_data = _pseudo_label(pool, out / "real", args, cfg) if pool else None
    datasets = {
        "synthetic-test": (SETS["synthetic-test"], test_data),
        "real-speech": (SETS["real-speech"], cfg.guard_data),
    }
    hf, ct2 = backends(cfg)
    if args.cuts_of:
        found = _cuts(args.cuts_of, out / "cuts", datasets, cfg, hf)
        (out / "cuts.json").write_text(json.dumps(found, indent=2))
        return 0
    if args.curve:
        found = {
            m: _curve(cfg, m, args, out, train_data, dev_data, datasets, hf) for m in args.methods
        }
        (out / "curve.json").write_text(json.dumps(found, indent=2))
        print(_curve_table(found))
        return 0
    report = Report(title="forgetting")
    # the base model on both sets with ct2, and on the guard set with transformers too (its
    # transformers output on the synthetic split loops to the token limit: slow, and not
    # needed to compare methods; the demo measures it)
    measure(report, "base", cfg.base_model, datasets, out / "eval", cfg, (ct2,))
    measure(
        report,
        "base",
        cfg.base_model,
        {"real-speech": datasets["real-speech"]},
        out / "eval",
        cfg,
        (hf,),
    )
    rows = {"base": {"train_seconds": 0.0, "scale": None, **_cers(report, "base", hf, ct2)}}

    for method in args.methods:
        mcfg, overrides = _method_config(cfg, method, args)
        if overrides.pop(REPLAY, False):
            overrides.update(replay_data=str(replay_data), replay_ratio=args.replay_ratio)
        if overrides.pop(PROMPTS, False):
            phrases = _sentences_file(train_data, out / "prompt-phrases.txt")
            overrides.update(prompt_ratio=args.prompt_ratio, prompt_file=str(phrases))
        weight = mcfg.anchor_weight if mcfg.anchor != "none" else None
        folder = out / method
        shutil.rmtree(folder, ignore_errors=True)
        clock = TrainClock()
        result = finetune(
            training_config(mcfg, folder / "train", train_data, dev_data, **overrides),
            callbacks=[clock],
        )
        scale, adapter, merged = guarded_merge(mcfg, report, folder, result, dev_data)
        converted = convert_to_ct2(
            merged, folder / "ct2", quantization=cfg.quantization, force=True, verify=False
        )
        measure(report, method, str(merged), datasets, folder / "eval", mcfg, (hf,))
        measure(report, method, str(converted), datasets, folder / "eval", mcfg, (ct2,))
        # the chosen adapter at full scale, to see what the method alone does
        full = merge_adapter(str(adapter), folder / "merged-1.0", scale=1.0, overwrite=True)
        measure(report, f"{method}@1.0", str(full), datasets, folder / "eval", mcfg, (hf,))
        rows[method] = {
            "train_seconds": clock.seconds,
            "scale": scale,
            "checkpoint": Path(adapter).name,
            "lora_r": mcfg.lora_r,
            "schedule": f"{mcfg.learning_rate:g} x {mcfg.max_steps}",
            "weight": weight,
            "curve": [p for p in clock.points if "eval_cer" in p],
            **_cers(report, method, hf, ct2),
            "tf_at_1.0": {
                k: report.find(f"{method}@1.0", hf.label, name).value for k, name in SETS.items()
            },
            "replay": overrides.get("replay_data"),
            "anchor_rows": overrides.get("anchor_rows", "all") if mcfg.anchor == "kd" else None,
            "real_change": _real_change(report, method, hf, ct2),
            "real_per_kind": [row for row in report.per_kind if row[0] in ("base", method)],
        }
        if args.parts:
            rows[method]["parts"] = _parts(
                str(result.final_dir), folder / "parts", datasets, mcfg, hf
            )
        (out / "forgetting.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
        print(_table(rows), flush=True)
    print(_table(rows))
    return 0


def _real_sets(folder: Path, split: bool) -> tuple[Path, Path | None]:
    """The real-speech guard manifest, and the replay pool's (None without ``split``).

    Without ``split``: all 48 shipped clips guard. With it: real-zh-dev's even lines are
    the pool, its odd lines and the original eight the guard (disjoint by construction).
    """
    from whisper_finetune.evaluation.realspeech import real_manifests, write_real_manifest

    original, zh_dev = real_manifests()
    if not split:
        return write_real_manifest(folder / "guard-48.jsonl"), None
    lines = [line for line in zh_dev.read_text(encoding="utf-8").splitlines() if line.strip()]
    odd, even = folder / "zh-dev-odd.jsonl", folder / "zh-dev-even.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    for path, part in ((odd, lines[0::2]), (even, lines[1::2])):
        rebased = []
        for line in part:
            obj = json.loads(line)
            obj["audio"]["path"] = str((zh_dev.parent / obj["audio"]["path"]).resolve())
            rebased.append(json.dumps(obj, ensure_ascii=False))
        path.write_text("\n".join(rebased) + "\n", encoding="utf-8")
    guard = write_real_manifest(folder / "guard-28.jsonl", [original, odd])
    pool = write_real_manifest(folder / "pool-20.jsonl", [even])
    return guard, pool


def _sentences_file(manifest: Path, path: Path) -> Path:
    """Every sentence of ``manifest`` (a packed window's each), one per line, at ``path``."""
    from whisper_finetune.data.manifest import read_manifest

    lines = []
    for record in read_manifest(manifest):
        lines += [s.text for s in record.sentences] if record.sentences else [record.sentence]
    path.write_text("".join(f"{line.strip()}\n" for line in lines if line.strip()), "utf-8")
    return path


def _pseudo_label(pool: Path, folder: Path, args, cfg: DemoConfig) -> Path:
    """The pool pseudo-labelled by the base model (ct2 int8: greedy and beam 5 agreeing)."""
    from whisper_finetune.data.recipes.pseudolabel import PseudoLabelConfig, pseudo_label
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions

    teacher = load_transcriber(
        cfg.base_model, "ct2", compute_type=cfg.quantization, cpu_threads=2, batch_size=8
    )
    plc = PseudoLabelConfig(
        audio=str(pool),
        output=str(folder / "replay.jsonl"),
        language=cfg.language,
        max_disagreement=args.max_disagreement,
        overwrite=True,
    )
    greedy = DecodeOptions(language=cfg.language, without_timestamps=True, robust=False)
    beam = DecodeOptions(
        language=cfg.language, without_timestamps=True, robust=False, beam_size=plc.beam_size
    )
    result = pseudo_label(
        plc, teacher, greedy, beam, teacher=f"{cfg.base_model} (ct2 {cfg.quantization})"
    )
    print(
        f"replay pool: kept {result.kept} of {len(result.verdicts)} clips (dropped: {result.dropped})",
        flush=True,
    )
    if not result.kept:
        raise SystemExit("no pseudo-label was kept: nothing to replay")
    return result.manifest


def _real_change(report: Report, method: str, hf, ct2) -> dict:
    """The method's real-speech CER change against the base, with its interval, per backend."""
    from whisper_finetune.evaluation.metrics import paired_bootstrap

    found = {}
    for b in (hf, ct2):
        base, tuned = (
            report.guard_clips.get(("base", b.label)),
            report.guard_clips.get((method, b.label)),
        )
        if base is not None and tuned is not None:
            found[b.name] = paired_bootstrap(base.clips, tuned.clips)._asdict()
    return found


def _method_config(cfg: DemoConfig, method: str, args) -> tuple[DemoConfig, dict]:
    """The demo's config with ``method``'s changes, and its FinetuneConfig overrides."""
    anchor, changes, overrides = METHODS[method]
    overrides = dict(overrides)
    weight = {"kd": args.kd_weight, "l2": args.l2_weight}.get(anchor, 1.0)
    if args.max_steps is not None:
        changes = {**changes, "max_steps": args.max_steps}
    return replace(cfg, anchor=anchor, anchor_weight=weight, **changes), overrides


def _tf_cers(model: str, datasets: dict, work: Path, cfg: DemoConfig, hf) -> dict:
    """CER of ``model`` on each dataset (slug -> (name, manifest)) with transformers."""
    report = Report(title=Path(model).name)
    measure(report, "model", model, datasets, work, cfg, (hf,))
    return {
        slug: report.find("model", hf.label, name).value for slug, (name, _) in datasets.items()
    }


def _curve(
    cfg: DemoConfig, method: str, args, out: Path, train_data, dev_data, datasets, hf
) -> dict:
    """Train with a checkpoint every ``args.curve`` steps; merge each at each scale; measure."""
    mcfg, overrides = _method_config(cfg, method, args)
    folder = out / method
    shutil.rmtree(folder, ignore_errors=True)
    result = finetune(
        training_config(
            replace(mcfg, eval_steps=args.curve),
            folder / "train",
            train_data,
            dev_data,
            save_total_limit=None,
            **overrides,
        )
    )
    history = json.loads((Path(result.output_dir) / "trainer_state.json").read_text())[
        "log_history"
    ]
    during = {}
    for h in history:
        for key in ("eval_cer", "eval_guard_cer"):
            if key in h:
                during.setdefault(str(h["step"]), {})[key.removeprefix("eval_")] = h[key]
    merged = {}
    for checkpoint in complete_checkpoints(result.output_dir):
        for scale in args.curve_scales:
            work = folder / "curve" / f"{checkpoint.name}-{scale:.2f}"
            model = merge_adapter(
                str(checkpoint), work / "merged", overwrite=True, **mcfg.merge_weights(scale)
            )
            merged[f"{checkpoint.name.split('-')[1]}@{scale:.2f}"] = _tf_cers(
                str(model), datasets, work / "eval", mcfg, hf
            )
            shutil.rmtree(model, ignore_errors=True)
    return {"during_training": during, "merged": merged}


def _curve_table(found: dict) -> str:
    lines = [
        "| method | step | subset / guard during training | merge scale | synthetic / real merged |",
        "|---|---|---|---|---|",
    ]
    for method, f in found.items():
        for key, m in f["merged"].items():
            step, scale = key.split("@")
            d = f["during_training"].get(step, {})
            lines.append(
                f"| {method} | {step} | {_cer(d.get('cer', float('nan')))} / "
                f"{_cer(d.get('guard_cer', float('nan')))} | {scale} | "
                f"{m['synthetic-test']:.3f} / {m['real-speech']:.3f} |"
            )
    return "\n".join(lines)


PARTS = {  # part -> regex on the adapter's tensor names
    "layers 0-2": r"layers\.[0-2]\.",
    "layers 3-5": r"layers\.[3-5]\.",
    "attention": r"_proj\.",
    "feed-forward": r"\.fc[12]\.",
}


def _parts(adapter: str, work: Path, datasets: dict, cfg: DemoConfig, hf) -> dict:
    """Merge only one part of the adapter (the others' B matrices zeroed) and measure it."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(Path(adapter) / "adapter_model.safetensors"))
    found = {}
    for part, pattern in PARTS.items():
        folder = work / part.replace(" ", "-")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(adapter, folder / "adapter")
        kept = {
            k: v if "lora_B" not in k or re.search(pattern, k) else v * 0
            for k, v in weights.items()
        }
        save_file(kept, str(folder / "adapter" / "adapter_model.safetensors"))
        merged = merge_adapter(
            str(folder / "adapter"), folder / "merged", scale=1.0, overwrite=True
        )
        found[part] = _tf_cers(str(merged), datasets, folder / "eval", cfg, hf)
        shutil.rmtree(folder / "merged", ignore_errors=True)
        print(
            f"{part}: synthetic {found[part]['synthetic-test']:.3f}, real {found[part]['real-speech']:.3f}",
            flush=True,
        )
    return found


CUTS = {  # name -> what each changed matrix keeps of its weight change
    "scale 0.5": lambda d: d * 0.5,
    "scale 0.3": lambda d: d * 0.3,
    "rank 4": lambda d: _rank(d, 4),
    "rank 8": lambda d: _rank(d, 8),
    "largest 10%": lambda d: _largest(d, 0.10),
    "largest 25%": lambda d: _largest(d, 0.25),
}


def _rank(delta, k: int):
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    return (u[:, :k] * s[:k]) @ vh[:k]


def _largest(delta, share: float):
    kept = delta.abs() >= delta.abs().flatten().kthvalue(int(delta.numel() * (1 - share))).values
    return delta * kept


def _cuts(adapter: str, work: Path, datasets: dict, cfg: DemoConfig, hf) -> dict:
    """The adapter's weight change W_merged - W_base, cut per matrix as in :data:`CUTS`."""
    from safetensors.torch import load_file, save_file

    full = merge_adapter(adapter, work / "scale-1.0", scale=1.0, overwrite=True)
    base = merge_adapter(adapter, work / "scale-0.0", scale=0.0, overwrite=True)
    merged, original = (
        load_file(str(full / "model.safetensors")),
        load_file(str(base / "model.safetensors")),
    )
    changed = {k for k in original if not torch.equal(merged[k], original[k])}
    found = {}
    for name, cut in {"scale 1.0": None, **CUTS}.items():
        folder = work / name.replace(" ", "-").replace("%", "pc")
        if cut is not None:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(full, folder)
            weights = {
                k: (v.float() + cut(merged[k].float() - v.float())).to(v.dtype)
                if k in changed
                else v
                for k, v in original.items()
            }
            save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        found[name] = _tf_cers(str(folder), datasets, folder / "eval", cfg, hf)
        print(
            f"{name}: synthetic {found[name]['synthetic-test']:.3f}, real {found[name]['real-speech']:.3f}",
            flush=True,
        )
    return found


def _cers(report: Report, stage: str, hf, ct2) -> dict:
    found = {
        (b.name, key): report.find(stage, b.label, name)
        for b in (hf, ct2)
        for key, name in SETS.items()
    }
    return {f"{b}_{key}": (m.value if m else float("nan")) for (b, key), m in found.items()}


def _cer(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"  # nan: not measured


def _table(rows: dict) -> str:
    head = (
        "| method | rank | lr x steps | weight | train s | checkpoint @ merge scale | synthetic CER tf / ct2 |"
        " real-speech CER tf / ct2 | full-scale tf synthetic / real |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for name, r in rows.items():
        full = r.get("tf_at_1.0")
        chosen = f"{r['checkpoint']} @ {r['scale']}" if r["scale"] is not None else "-"
        lines.append(
            f"| {name} | {r.get('lora_r') or '-'} | {r.get('schedule') or '-'} | {r.get('weight') or '-'} | {r['train_seconds']:.0f} | {chosen} | "
            f"{_cer(r['transformers_synthetic-test'])} / {_cer(r['ct2_synthetic-test'])} | "
            f"{_cer(r['transformers_real-speech'])} / {_cer(r['ct2_real-speech'])} | "
            + (f"{full['synthetic-test']:.3f} / {full['real-speech']:.3f} |" if full else "- |")
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
