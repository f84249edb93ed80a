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
    beam_size: int = 1


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
    return guard_kept(interval.difference, interval.high, cfg), interval


def guard_kept(difference: float, high: float, cfg: DemoConfig) -> bool:
    """Whether a CER change (``difference``, its interval's upper end ``high``) keeps the
    guard under ``cfg.guard_rule`` and ``cfg.guard_max_increase``."""
    judged = difference if cfg.guard_rule == "estimate" else high
    return judged <= cfg.guard_max_increase + 1e-9


def backends(cfg: DemoConfig) -> tuple[Backend, Backend]:
    return (
        Backend("transformers", "default", "transformers fp32", cfg.transformers_beam_size),
        Backend("ct2", cfg.quantization, f"ct2 {cfg.quantization}", cfg.beam_size),
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
            beam_size=backend.beam_size,
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


@dataclass
class MergePoint:
    """One trial merge: a checkpoint's adapters at one scale, scored with CTranslate2."""

    checkpoint: Path
    scale: float
    guard_cer: float  # on the guard set
    interval: object  # the guard change's PairedBootstrap against the base model
    kept: bool  # the guard's verdict (guard_verdict)
    dev_cer: float  # on the dev set
    merged: Path | None = None  # the merge's folder while it may still be chosen

    def meets(self, target: float | None) -> bool:
        """Whether the dev set's CER reaches ``target`` (no target: never)."""
        return target is not None and self.dev_cer <= target + 1e-9


def trial_merge(adapter: str, folder: Path, manifests: dict[str, str], cfg: DemoConfig, **weights):
    """Merge ``adapter`` with ``weights`` (``merge_adapter``'s ``scale``/``decoder_scale``)
    into ``folder/merged``, convert it to CTranslate2 (``cfg.quantization``, the deployed
    form) and score it with the guard's backend on each manifest (``name -> path``, results
    in ``folder/eval-<name>``). The conversion is removed, the merge kept.

    Returns:
        ``(merged folder, [report per manifest])``.
    """
    from whisper_finetune.models.convert import convert_to_ct2
    from whisper_finetune.training.merge import merge_adapter

    # a trial merge: word-timestamp heads are not what the guard judges (and choosing them
    # costs minutes a merge on a CPU)
    merged = merge_adapter(
        adapter, folder / "merged", overwrite=True, alignment_heads=False, **weights
    )
    converted = convert_to_ct2(
        merged, folder / "ct2", quantization=cfg.quantization, force=True, verify=False
    )
    folders = {folder / f"eval-{name}": path for name, path in manifests.items()}
    reports = evaluate_model(str(converted), backends(cfg)[1], folders, cfg)
    shutil.rmtree(converted, ignore_errors=True)
    return merged, reports


def search_merges(
    checkpoints: list[Path],
    guard_manifest: str,
    baseline: GuardResult,
    cfg: DemoConfig,
    work: Path,
    dev_manifest: str,
) -> list[MergePoint]:
    """Merge each checkpoint at the scales of ``cfg.merge_scales`` and score every merge
    (:func:`trial_merge`) on the guard set and the dev set.

    ``checkpoints`` come in step order (as
    :func:`~whisper_finetune.training.checkpoints.complete_checkpoints` gives them); the
    newest goes first and each checkpoint's scales largest first. A
    checkpoint's scan stops at its first scale that keeps the guard (smaller scales forget
    less but learn less: that merge has the lowest dev CER of the checkpoint's merges
    that keep it), or at a scale that misses ``cfg.target_cer`` once some merge has reached
    it (smaller ones would miss it too); the whole search stops at the first merge that
    meets both bounds (guard kept, dev CER within the target). Every merge stays on disk
    until :func:`choose_merge` has chosen.

    Args:
        baseline: the base model's guard result with CTranslate2 (:class:`GuardResult`).

    Returns:
        the merges tried, in the order tried (the trade-off curve's points).
    """
    points = []
    for checkpoint in reversed(checkpoints):
        for scale in cfg.merge_scales:
            merged, (guard, dev) = trial_merge(
                str(checkpoint),
                work / checkpoint.name / f"scale-{scale:.2f}",
                {"guard": guard_manifest, "dev": dev_manifest},
                cfg,
                **cfg.merge_weights(scale),
            )
            kept, interval = guard_verdict(baseline, GuardResult.of(guard), cfg)
            point = MergePoint(checkpoint, scale, guard.value, interval, kept, dev.value, merged)
            points.append(point)
            logger.info(
                "%s at merge scale %.2f: guard change %s (%s), dev CER %.3f",
                checkpoint.name,
                scale,
                interval.describe(),
                "kept" if kept else "broken",
                dev.value,
            )
            if kept and point.meets(cfg.target_cer):
                return points
            if kept:
                break
            # a smaller scale learns less: once one merge reaches the target, this
            # checkpoint's smaller scales can only add points that miss it
            if not point.meets(cfg.target_cer) and any(p.meets(cfg.target_cer) for p in points):
                break
    return points


def choose_merge(points: list[MergePoint], cfg: DemoConfig) -> tuple[MergePoint, str]:
    """The merge to keep, and why, by the first rule that has a candidate:

    1. both bounds met (guard kept, dev CER within ``cfg.target_cer``): the lowest
       dev CER;
    2. the target reached but no merge keeps the guard with it: the one that forgets least
       (the smallest guard change) among those that reach the target;
    3. the guard kept but the target out of reach: the lowest dev CER among those;
    4. neither: the lowest dev CER of all (the merge that learned most; the report
       says that no bound was met).

    A tie goes to the merge tried first (the newer checkpoint, the larger scale).
    """
    target = cfg.target_cer
    both = [p for p in points if p.kept and p.meets(target)]
    if both:
        return min(both, key=lambda p: p.dev_cer), "meets both bounds"
    reach = [p for p in points if p.meets(target)]
    if reach:
        chosen = min(reach, key=lambda p: p.interval.difference)
        return chosen, (
            f"no merge kept the guard at dev CER <= {target}: of those that reach it, "
            "the one that forgets least"
        )
    kept = [p for p in points if p.kept]
    if kept:
        why = f"no merge reached dev CER {target}" if target is not None else "no target"
        return min(kept, key=lambda p: p.dev_cer), (
            f"{why}: of those that keep the guard, the lowest dev CER"
        )
    return min(points, key=lambda p: p.dev_cer), (
        "no merge kept the guard or reached the target: the lowest dev CER"
    )
