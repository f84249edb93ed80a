"""The demo's measurements: a model on its test sets, per backend, and the guarded merge."""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from whisper_finetune.demo.recipe import DemoConfig
from whisper_finetune.demo.report import Measurement, Report

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """One way of running a model: ``backend`` and ``compute_type`` for the loader, a label."""

    name: str
    compute_type: str
    label: str


@dataclass(frozen=True)
class GuardResult:
    """A model's score on the guard set: the corpus CER and each clip's ``(errors, ref_units)``."""

    value: float
    clips: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, report) -> GuardResult:
        return cls(report.value, tuple((u.errors, u.ref_units) for u in report.utterances))


def guard_verdict(base: GuardResult, merged: GuardResult, cfg: DemoConfig):
    """``(kept, interval)``: whether ``merged`` keeps the guard against ``base``, and the
    paired bootstrap (:func:`~whisper_finetune.evaluation.metrics.paired_bootstrap`, over
    clips, seeded by ``cfg.seed``) of its CER change.

    With ``cfg.guard_rule == "estimate"`` the change itself must be within
    ``cfg.guard_max_increase``; with ``"upper"`` the interval's upper end must be.
    """
    from whisper_finetune.evaluation.metrics import paired_bootstrap

    interval = paired_bootstrap(base.clips, merged.clips, seed=cfg.seed)
    judged = interval.difference if cfg.guard_rule == "estimate" else interval.high
    return judged <= cfg.guard_max_increase + 1e-9, interval


def backends(cfg: DemoConfig) -> tuple[Backend, Backend]:
    return (
        Backend("transformers", "default", "transformers fp32"),
        Backend("ct2", cfg.quantization, f"ct2 {cfg.quantization}"),
    )


def evaluate_model(model: str, backend: Backend, manifests: dict[Path, str], cfg: DemoConfig):
    """Load ``model`` once and evaluate it on each manifest (output folder -> manifest)."""
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.evaluation.evaluate import EvalConfig, evaluate, write_report
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions

    transcriber = load_transcriber(
        model,
        backend.name,
        compute_type=backend.compute_type,
        cpu_threads=2,
        batch_size=cfg.batch_size,
    )
    reports = []
    for out_dir, manifest in manifests.items():
        records = read_manifest(manifest)
        limit = cfg.max_new_tokens or token_limit([r.sentence for r in records], cfg.base_model)
        options = DecodeOptions(
            language=cfg.language,
            without_timestamps=True,
            max_new_tokens=limit,
            beam_size=cfg.beam_size,
        )
        report = evaluate(
            transcriber, records, EvalConfig(batch_size=cfg.batch_size, decode=options)
        )
        write_report(
            report,
            out_dir,
            model=str(model),
            backend=backend.name,
            compute_type=backend.compute_type,
        )
        reports.append(report)
    return reports


def token_limit(sentences, base_model: str) -> int:
    """New tokens allowed per clip: as in training's evaluation, twice what the longest
    reference needs (``generation_limit``), so a wrong, longer hypothesis is still scored
    as insertions while a repetition loop stops there instead of at Whisper's 448 tokens
    (the base model loops on most synthetic clips, and robust decoding tries each window
    up to six times)."""
    from whisper_finetune.training.trainer import generation_limit

    tokenizer = _tokenizer(base_model)
    longest = max(
        (len(tokenizer(s, add_special_tokens=False).input_ids) for s in sentences), default=0
    )
    return generation_limit(longest + 4)  # + language, task, no-timestamps, end


@functools.lru_cache(maxsize=4)
def _tokenizer(base_model: str):
    """The base model's tokenizer, loaded once (every merge scale tried evaluates again)."""
    from transformers import WhisperTokenizerFast

    from whisper_finetune.models.resolve import resolve_model

    return WhisperTokenizerFast.from_pretrained(resolve_model(base_model))


def measure(
    report: Report,
    stage: str,
    model: str,
    datasets: dict[str, tuple[str, str]],
    out: Path,
    cfg: DemoConfig,
    which: tuple[Backend, ...],
) -> None:
    """Evaluate ``model`` on every dataset (slug -> (display name, manifest)) with each backend.

    Results go to ``out/<stage>-<slug>-<backend>/`` and into ``report`` (per set, and per
    clip and per source kind for the guard set, whose per-clip counts are kept in
    ``report.guard_clips`` for the paired bootstrap).
    """
    from whisper_finetune.evaluation.realspeech import clip_kinds, per_kind

    for backend in which:
        folders = {
            out / f"{stage}-{slug}-{backend.name}": manifest
            for slug, (_, manifest) in datasets.items()
        }
        results = evaluate_model(model, backend, folders, cfg)
        for (slug, (name, _)), r in zip(datasets.items(), results, strict=True):
            report.measurements.append(
                Measurement(stage, backend.label, name, r.metric, r.value, r.n_utts, r.rtf)
            )
            logger.info(
                "%s %s on %s: %s %.3f (RTF %.3f)",
                stage,
                backend.label,
                name,
                r.metric.upper(),
                r.value,
                r.rtf,
            )
            if slug == "real-speech":
                report.guard_clips[(stage, backend.label)] = GuardResult.of(r)
                kinds = clip_kinds(datasets[slug][1])
                for kind, row in per_kind(r.utterances, kinds).items():
                    report.per_kind.append(
                        (
                            stage,
                            backend.label,
                            kind,
                            int(row["clips"]),
                            int(row["ref_units"]),
                            row["cer"],
                        )
                    )
                for u in r.utterances:
                    report.per_clip.append(
                        (
                            stage,
                            backend.label,
                            Path(u.audio).name,
                            u.errors / max(u.ref_units, 1),
                            u.hypothesis,
                        )
                    )


def choose_merge_scale(
    adapter: str,
    guard_manifest: str,
    baselines: dict[str, float],
    cfg: DemoConfig,
    work: Path,
    keep: bool = False,
):
    """The largest scale in ``cfg.merge_scales`` whose merge keeps the guard on every backend.

    The scale weighs the adapters ``cfg.scale_part`` names (the decoder's, or all).

    A scale passes when the merged model's CER on the guard set stays within
    ``cfg.guard_max_increase`` of the base model's (:func:`guard_verdict`: the change, or
    with ``guard_rule=upper`` the upper end of its paired-bootstrap interval over clips)
    after conversion to CTranslate2 (``cfg.quantization``, measured first: it costs half as
    much) *and* with transformers fp32: quantization can tip a merge that transformers
    tolerates (seen here: 0.121 with transformers, 0.152 with ct2 int8).

    Args:
        baselines: the base model's guard result per backend name, ``"transformers"``
            and ``"ct2"`` (:class:`GuardResult`).

    Returns:
        ``(scale, [(scale, {backend: guard CER}, {backend: PairedBootstrap}), ...])``; the smallest scale tried when
        none keeps the guard (with a warning). With ``keep``, the merge at the scale that
        kept the guard stays in ``work/scale-<scale>/merged``.
    """
    from whisper_finetune.models.convert import convert_to_ct2
    from whisper_finetune.training.merge import merge_adapter

    hf, ct2 = backends(cfg)
    tried = []
    for scale in cfg.merge_scales:
        folder = work / f"scale-{scale:.2f}"
        # a trial merge: word-timestamp heads are not what the guard judges (and choosing
        # them costs minutes a merge on a CPU)
        merged = merge_adapter(
            adapter,
            folder / "merged",
            overwrite=True,
            alignment_heads=False,
            **cfg.merge_weights(scale),
        )
        values, intervals, passed = {}, {}, {}
        # CTranslate2 int8 first: half the cost of transformers fp32 on a CPU, and the
        # backend quantization tips; transformers only for a merge it keeps
        converted = convert_to_ct2(
            merged, folder / "ct2", quantization=cfg.quantization, force=True, verify=False
        )
        [r] = evaluate_model(str(converted), ct2, {folder / "eval-ct2": guard_manifest}, cfg)
        shutil.rmtree(converted, ignore_errors=True)
        values["ct2"] = r.value
        passed["ct2"], intervals["ct2"] = guard_verdict(baselines["ct2"], GuardResult.of(r), cfg)
        if passed["ct2"]:
            [r] = evaluate_model(
                str(merged), hf, {folder / "eval-transformers": guard_manifest}, cfg
            )
            values["transformers"] = r.value
            passed["transformers"], intervals["transformers"] = guard_verdict(
                baselines["transformers"], GuardResult.of(r), cfg
            )
        tried.append((scale, values, intervals))
        logger.info(
            "merge scale %.2f: guard CER change %s",
            scale,
            {k: v.describe() for k, v in intervals.items()},
        )
        kept = all(passed.get(k, False) for k in baselines)
        if not (kept and keep):
            shutil.rmtree(merged, ignore_errors=True)
        if kept:
            return scale, tried
    logger.warning("no merge scale kept the guard; using the smallest, %.2f", cfg.merge_scales[-1])
    return cfg.merge_scales[-1], tried


def choose_checkpoint_and_scale(
    checkpoints: list[Path],
    guard_manifest: str,
    baselines: dict[str, float],
    cfg: DemoConfig,
    work: Path,
    subset_manifest: str,
):
    """The checkpoint and merge scale that keep the guard with the lowest test-subset CER.

    For each checkpoint, :func:`choose_merge_scale` finds the largest scale that keeps the
    guard on every backend; that merge is scored on the test subset with transformers, and
    the lowest CER wins (a tie goes to the later checkpoint). A checkpoint whose every scale
    breaks the guard is not a candidate. An earlier checkpoint can win: on the demo's
    rank-32 adapter, checkpoint 30 of 60 merged at 0.5 gave synthetic 0.136 / real speech 0.114,
    where checkpoint 60 kept the guard only at 0.3, giving 0.206 / 0.114
    (``benchmarks/forgetting.py --cuts_of``).

    Returns:
        ``(checkpoint, scale, merged, rows)``: the winner and its merged folder, or ``(None,
        smallest scale, None, rows)`` with a warning when no checkpoint kept the guard;
        ``rows`` has one dict per checkpoint (``checkpoint``, ``scale``, ``tried``,
        ``kept``, ``subset_cer``).
    """
    hf, _ = backends(cfg)
    rows, best = [], None
    for checkpoint in checkpoints:
        folder = work / checkpoint.name
        scale, tried = choose_merge_scale(
            str(checkpoint), guard_manifest, baselines, cfg, folder, keep=True
        )
        merged = folder / f"scale-{scale:.2f}" / "merged"
        row = {
            "checkpoint": checkpoint,
            "scale": scale,
            "tried": tried,
            "kept": merged.is_dir(),
            "subset_cer": None,
        }
        rows.append(row)
        if not row["kept"]:
            continue
        [r] = evaluate_model(str(merged), hf, {folder / "eval-subset": subset_manifest}, cfg)
        row["subset_cer"] = r.value
        logger.info("%s at scale %.2f: test subset CER %.3f", checkpoint.name, scale, r.value)
        if best is None or r.value <= best["subset_cer"]:
            if best is not None:
                shutil.rmtree(best["merged"], ignore_errors=True)
            best = {**row, "merged": merged}
        else:
            shutil.rmtree(merged, ignore_errors=True)
    if best is None:
        logger.warning("no checkpoint kept the guard at any merge scale")
        return None, cfg.merge_scales[-1], None, rows
    return best["checkpoint"], best["scale"], best["merged"], rows
