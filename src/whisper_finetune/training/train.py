"""Fine-tune Whisper with the transformers ``Seq2SeqTrainer``: ``finetune(cfg) -> FinetuneResult``.

A run, all under ``cfg.output_dir``:

* ``finetune_config.json``: the resolved config (written first);
* ``data_report.json``: per data set, what was kept and what was skipped and why;
* ``checkpoint-N/``: Trainer checkpoints (adapter or full weights, optimizer,
  scheduler, RNG states, ``trainer_state.json``), rotated by ``save_total_limit``; the
  best one (by ``eval_<metric>``, or ``eval_guarded_<metric>``) is always kept;
* ``runs/``: TensorBoard logs;
* ``final/``: the result (best checkpoint when evaluating, else the last) with the
  tokenizer and ``preprocessor_config.json``: an adapter to ``merge``, or, for
  ``--method=full``, a complete model.

Evaluation generates greedily (``predict_with_generate``) and scores CER/WER with the
project's normalizer, next to the eval loss.

The forgetting guard (``guard_data``, ``guard_max_increase``) is described in
:mod:`whisper_finetune.training.trainer`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from whisper_finetune.training.checkpoints import (
    _check_adalora_resume,
    _clear_previous_run,
    _drop_incomplete_checkpoints,
    _resume_path,
    check_resumed_config,
    disk_full_error,
    latest_checkpoint,
)
from whisper_finetune.training.config import FinetuneConfig, adalora_total_step

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "finetune",
    "latest_checkpoint",
    "adalora_total_step",
]

logger = logging.getLogger(__name__)

CACHE_LIMIT_BYTES = 2 * 1024**3  # cache_features=None caches log-mels of data sets below this


@dataclass(frozen=True)
class FinetuneResult:
    """What a run produced."""

    output_dir: Path
    final_dir: Path
    global_step: int
    train_loss: float
    best_checkpoint: str | None = None
    best_metric: float | None = None
    guard_baseline: float | None = None
    guard_ok: bool | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _load_data(cfg: FinetuneConfig, labels, feature_extractor, is_main: bool):
    """Manifests -> datasets, and the data report."""
    from whisper_finetune.data.augment import Augmenter
    from whisper_finetune.data.dataset import WhisperDataset, prepare_records, write_reports
    from whisper_finetune.data.manifest import read_manifest

    common = dict(
        min_duration=cfg.min_duration,
        max_duration=cfg.max_duration,
        verify_audio=cfg.verify_audio,
        skip_bad=cfg.skip_bad_samples,
    )
    reports, datasets = [], {}
    for name, path in (
        ("train", cfg.train_data),
        ("eval", cfg.test_data),
        ("guard", cfg.guard_data),
        ("replay", cfg.replay_data),
    ):
        if not path:
            datasets[name] = None
            continue
        records = read_manifest(path)
        if name in ("eval", "guard") and cfg.max_eval_samples:
            records = records[: cfg.max_eval_samples]
        kept, report = prepare_records(records, labels, name=name, **common)
        reports.append(report)
        if not kept:
            raise ValueError(f"{path}: no usable records left ({report.summary()})")
        train = name == "train"
        augmenter = (
            Augmenter.from_file(cfg.augment_config) if train and cfg.augment_config else None
        )
        cache = cache_features(cfg, len(kept), feature_extractor.feature_size)
        datasets[name] = WhisperDataset(
            kept,
            feature_extractor,
            labels,
            timestamp_ratio=cfg.timestamp_ratio if train else 0.0,
            augmenter=augmenter,
            seed=cfg.seed,
            cache_features=cache,
            attention_mask=train and cfg.apply_spec_augment,  # SpecAugment masks only audio
        )
    if is_main:
        path = write_reports(reports, Path(cfg.output_dir) / "data_report.json")
        if any(r.skipped for r in reports):
            logger.warning("skipped samples are listed in %s", path)
    return datasets


def replay_per_batch(cfg: FinetuneConfig) -> int:
    """Replay clips added to every training batch: ``replay_ratio`` x batch size, at least 1."""
    return max(1, round(cfg.replay_ratio * cfg.per_device_train_batch_size))


def cache_features(cfg: FinetuneConfig, n_clips: int, n_mels: int) -> bool:
    """Whether a data set keeps its log-mels in memory.

    Only without dataloader workers: each worker would fill a private cache that dies
    with it at the end of every epoch, so the cache would cost memory and never hit.
    """
    if cfg.num_workers:
        if cfg.cache_features:
            logger.warning(
                "--cache_features is off with --num_workers=%d: each worker's cache would be "
                "lost at every epoch's end",
                cfg.num_workers,
            )
        return False
    if cfg.cache_features is None:  # log-mels are n_mels x 3000 float32 per clip
        return n_clips * n_mels * 3000 * 4 < CACHE_LIMIT_BYTES
    return cfg.cache_features


def _cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (avx512_bf16 or AMX); True when unknown."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


@contextlib.contextmanager
def _known_warnings_silenced():
    """Silence library warnings that are expected here and say nothing actionable."""
    with warnings.catch_warnings():
        # peft looks for config.json under the stored base name to check for resized
        # embeddings; "embedded:whisper-base" and hub ids are not folders
        warnings.filterwarnings("ignore", message="Could not find a config file in")
        # AdaLoRA may prune a module to rank 0; peft mistakes that for an ungathered shard
        warnings.filterwarnings("ignore", message=r".*LoRA tensor\(s\) have invalid shape")
        # peft still calls the deprecated name (transformers 5.24)
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        yield


def finetune(cfg: FinetuneConfig, callbacks=()) -> FinetuneResult:
    """Fine-tune Whisper as ``cfg`` says; see the module docstring for the outputs.

    Works unchanged under ``torchrun``/``accelerate launch`` (DDP; gloo on CPU).

    Args:
        cfg: the run's configuration (resolved here for this machine).
        callbacks: extra ``TrainerCallback`` objects.

    Returns:
        The run's :class:`FinetuneResult`.

    Raises:
        ValueError: bad settings or data (with the manifest line), no checkpoint to
            resume from, or checkpoints in ``output_dir`` without a resume/overwrite flag.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        with _known_warnings_silenced(), _one_writer(cfg.output_dir):
            return _finetune(cfg, callbacks)
    except Exception as exc:  # a full disk while saving: one line, what is kept, what next
        full = disk_full_error(exc, cfg.output_dir)
        if full is None:
            raise
        raise full from exc
    finally:
        torch.set_num_threads(threads)  # num_threads applies to this run only


def _one_writer(output_dir: str):
    """Rank 0 holds the run folder for the whole run: a second run into it fails at once
    (issue 27.4; the ranks of one run share it)."""
    import contextlib

    from whisper_finetune.staging import output_lock

    if int(os.environ.get("RANK", 0)) != 0 or not output_dir:
        return contextlib.nullcontext()
    return output_lock(output_dir)


def _finetune(cfg: FinetuneConfig, callbacks) -> FinetuneResult:
    import torch
    from transformers import WhisperProcessor, set_seed

    from whisper_finetune.data.collator import WhisperCollator
    from whisper_finetune.data.dataset import LabelBuilder
    from whisper_finetune.models.resolve import resolve_model
    from whisper_finetune.training.adapters import build_model
    from whisper_finetune.training.anchor import Anchor
    from whisper_finetune.training.callbacks import (
        WEIGHT_DIGEST_ENV,
        AdaLoraCallback,
        EpochSeedCallback,
        NonFiniteLossCallback,
        WeightDigestCallback,
    )
    from whisper_finetune.training.losses import adalora_orth_reg
    from whisper_finetune.training.prompts import attach_prompts, wrap_collators
    from whisper_finetune.training.trainer import (
        GuardPolicy,
        WhisperTrainer,
        compute_metrics,
        guard_baseline,
        training_arguments,
    )
    from whisper_finetune.version import __version__

    cfg = cfg.resolved()
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    is_main = int(os.environ.get("RANK", 0)) == 0
    resume = _resume_path(cfg)
    _check_adalora_resume(cfg, resume)
    resumed = check_resumed_config(cfg, resume)  # issue 27.5: the run's own settings
    if resume and is_main:
        _drop_incomplete_checkpoints(cfg.output_dir)
    elif cfg.overwrite_output_dir and is_main and latest_checkpoint(cfg.output_dir):
        _clear_previous_run(cfg.output_dir)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.precision == "bf16" and cfg.device == "cpu" and not _cpu_has_bf16():
        logger.warning(
            "--precision=bf16: this CPU has no bf16 instructions; it will be slow, use fp32"
        )
    model_path = resolve_model(cfg.base_model)
    if is_main:
        cfg.save(
            Path(cfg.output_dir) / "finetune_config.json",
            provenance={
                "resolved_base_model": model_path,
                "world_size": world_size,
                "version": __version__,
            },
        )
    set_seed(cfg.seed)
    processor = WhisperProcessor.from_pretrained(model_path)
    labels = LabelBuilder(processor.tokenizer, cfg.language, cfg.task)
    data = _load_data(cfg, labels, processor.feature_extractor, is_main)
    data["train"] = attach_prompts(cfg, data["train"], processor.tokenizer)
    model = build_model(cfg, model_path, len(data["train"]), world_size)

    extra = [EpochSeedCallback(data["train"]), NonFiniteLossCallback(), *resumed]
    if cfg.method == "adalora":
        extra.append(AdaLoraCallback())
    if os.environ.get(WEIGHT_DIGEST_ENV):
        extra.append(WeightDigestCallback(os.environ[WEIGHT_DIGEST_ENV]))
    trainer = WhisperTrainer(
        model=model,
        args=training_arguments(cfg, data["eval"] is not None, world_size),
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        data_collator=WhisperCollator(model.config.decoder_start_token_id),
        train_collator=WhisperCollator(
            model.config.decoder_start_token_id,
            replay=data["replay"],
            replay_per_batch=replay_per_batch(cfg),
            seed=cfg.seed,
        )
        if data["replay"] is not None
        else None,
        processing_class=processor.feature_extractor,
        compute_metrics=compute_metrics(processor.tokenizer, cfg.metric)
        if data["eval"] is not None
        else None,
        callbacks=[*extra, *callbacks],
        language=labels.default_language,
        task=cfg.task,
        metric=cfg.metric,
        guard_dataset=data["guard"],
        loss_terms=[adalora_orth_reg] if cfg.method == "adalora" else [],
        max_nonfinite_steps=cfg.max_nonfinite_steps,
        generation_max_length=cfg.generation_max_length,
        anchor=Anchor(cfg.anchor, cfg.anchor_weight, cfg.anchor_temperature, cfg.anchor_rows)
        if cfg.anchor != "none"
        else None,
    )
    if cfg.prompt_ratio:
        wrap_collators(trainer)
    _tensorboard_into_output(trainer, cfg.output_dir)
    baseline = None
    if data["guard"] is not None:
        baseline = guard_baseline(trainer, cfg, model, len(data["guard"]), is_main)
        if cfg.guard_max_increase is not None:
            trainer.guard_policy = GuardPolicy(baseline, cfg.guard_max_increase)

    output = trainer.train(resume_from_checkpoint=resume)
    final_dir = _save_final(cfg, trainer, processor)
    return _result(cfg, trainer, output, final_dir, baseline)


def _tensorboard_into_output(trainer, output_dir: str) -> None:
    """Give transformers' TensorBoard callback its folder (``<output_dir>/runs/<time>_<host>``)
    now: it only picks one when training begins, and the guard baseline's evaluation
    before that would open a writer in ``./runs`` of the current directory instead."""
    from transformers.integrations import TensorBoardCallback
    from transformers.integrations.integration_utils import default_logdir

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = os.path.join(output_dir, default_logdir())


def _save_final(cfg: FinetuneConfig, trainer, processor) -> Path:
    """Write ``final/``: the best (else last) weights, tokenizer and preprocessor config."""
    import shutil

    final_dir = Path(cfg.output_dir) / "final"
    best = trainer.state.best_model_checkpoint
    if cfg.method == "adalora" and best:
        if trainer.args.should_save:
            final_dir.mkdir(parents=True, exist_ok=True)
            for name in ("adapter_model.safetensors", "adapter_config.json"):
                shutil.copy2(Path(best) / name, final_dir / name)
    else:
        trainer.save_model(str(final_dir))
    if trainer.args.should_save:
        processor.tokenizer.save_pretrained(final_dir)
        processor.feature_extractor.save_pretrained(final_dir)  # preprocessor_config.json
        trainer.save_state()
    return final_dir


def _result(cfg, trainer, output, final_dir: Path, baseline: float | None) -> FinetuneResult:
    state = trainer.state
    evals = [h for h in state.log_history if any(k.startswith("eval_") for k in h)]
    last_eval = {}
    for h in evals:
        if h.get("step") == state.global_step:
            last_eval.update({k: v for k, v in h.items() if k.startswith("eval_")})
    guard_ok = None
    if baseline is not None and cfg.guard_max_increase is not None and state.best_global_step:
        at_best = [
            h
            for h in evals
            if h.get("step") == state.best_global_step and f"eval_guard_{cfg.metric}" in h
        ]
        if at_best:
            guard_ok = (
                at_best[-1][f"eval_guard_{cfg.metric}"] <= baseline + cfg.guard_max_increase + 1e-12
            )
            if not guard_ok:
                logger.warning(
                    "no checkpoint kept the guard within +%g; chose the one that forgot least",
                    cfg.guard_max_increase,
                )
    loss = float(output.training_loss)
    logger.info(
        "finished at step %d (train loss %.4f); result in %s", state.global_step, loss, final_dir
    )
    return FinetuneResult(
        output_dir=Path(cfg.output_dir),
        final_dir=final_dir,
        global_step=state.global_step,
        train_loss=loss if math.isfinite(loss) else float("nan"),
        best_checkpoint=state.best_model_checkpoint,
        best_metric=state.best_metric,
        guard_baseline=baseline,
        guard_ok=guard_ok,
        metrics=last_eval,
    )
