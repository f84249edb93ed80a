"""Run folders: finding complete checkpoints, resuming, starting over."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from whisper_finetune.training.config import FinetuneConfig

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The run's *complete* checkpoints (with ``trainer_state.json``), by step.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint cut short by a kill
    lacks it and is passed over.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The highest-numbered complete checkpoint (see :func:`complete_checkpoints`)."""
    found = complete_checkpoints(output_dir)
    return found[-1] if found else None


def _drop_incomplete_checkpoints(output_dir: str | os.PathLike) -> None:
    """Delete checkpoint folders that a kill cut short (no ``trainer_state.json``).

    The resumed run would write over them anyway; left alone they would count towards
    ``save_total_limit`` and could be taken for real checkpoints.
    """
    import shutil

    for path in Path(output_dir).glob("checkpoint-*"):
        if _CHECKPOINT.match(path.name) and not (path / "trainer_state.json").is_file():
            logger.warning("removing incomplete checkpoint %s (its run was interrupted)", path)
            shutil.rmtree(path, ignore_errors=True)


def _clear_previous_run(output_dir: str | os.PathLike) -> None:
    """``--overwrite_output_dir``: remove the previous run's checkpoints and results."""
    import shutil

    folder = Path(output_dir)
    for path in [*folder.glob("checkpoint-*"), folder / "final"]:
        if path.is_dir() and (path.name == "final" or _CHECKPOINT.match(path.name)):
            shutil.rmtree(path)
    for name in ("trainer_state.json", "guard_baseline.json", "data_report.json"):
        (folder / name).unlink(missing_ok=True)
    logger.warning("--overwrite_output_dir: removed the previous run's checkpoints in %s", folder)


def _resume_path(cfg: FinetuneConfig) -> str | None:
    value = cfg.resume_from_checkpoint
    if not value:
        if latest_checkpoint(cfg.output_dir) is not None and not cfg.overwrite_output_dir:
            raise ValueError(
                f"{cfg.output_dir} already holds checkpoints: pass --resume_from_checkpoint=true to "
                f"continue that run, or --overwrite_output_dir to start over in it"
            )
        return None
    if value.lower() in ("true", "yes", "1", "latest"):
        found = latest_checkpoint(cfg.output_dir)
        if found is None:
            raise ValueError(
                f"--resume_from_checkpoint=true: no complete checkpoint in {cfg.output_dir}"
            )
        return _readable_state(str(found))
    if not (Path(value) / "trainer_state.json").is_file():
        raise ValueError(
            f"--resume_from_checkpoint: {value} is not a complete checkpoint (no trainer_state.json)"
        )
    return _readable_state(value)


def _readable_state(checkpoint: str) -> str:
    """The checkpoint, once its ``trainer_state.json`` is known to parse (issue 27.15)."""
    path = Path(checkpoint) / "trainer_state.json"
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(
            f"{path}: the checkpoint's training state does not parse ({exc}); resume from "
            "an earlier checkpoint with --resume_from_checkpoint=<its folder>"
        ) from exc
    return checkpoint


def _check_adalora_resume(cfg: FinetuneConfig, checkpoint: str | None) -> None:
    """AdaLoRA resumes only from checkpoints saved before pruning began.

    peft saves a pruned AdaLoRA adapter cut down to its rank pattern, and cannot load
    such a checkpoint back into a model that is still being pruned (size mismatch);
    its rank-importance statistics are not checkpointed either.
    """
    if cfg.method != "adalora" or checkpoint is None:
        return
    adapter = json.loads((Path(checkpoint) / "adapter_config.json").read_text(encoding="utf-8"))
    if adapter.get("rank_pattern"):
        raise ValueError(
            f"cannot resume AdaLoRA from {checkpoint}: its ranks were already pruned, and peft cannot "
            f"load a pruned AdaLoRA checkpoint back for training. The checkpoint is a usable adapter "
            f"(merge or evaluate it), or restart the run (LoRA runs resume exactly)."
        )
    logger.warning("resuming AdaLoRA: its rank-importance statistics restart from zero")


# --- resuming with the run's own settings (issue 27.5) --------------------------------

# flags that decide what the checkpoint's weights are: another value cannot load them
# (a size mismatch) or would train another model under the same name
SHAPE_FLAGS = (
    "method",
    "lora_r",
    "lora_alpha",
    "target_modules",
    "lora_layers",
    "adalora_init_r",
    "freeze_encoder",
)
# flags the restored optimizer and scheduler carry: a new value is ignored by them unless
# applied, so it is refused unless --allow_changed_optimization says to apply it
OPTIMIZATION_FLAGS = (
    "learning_rate",
    "weight_decay",
    "lr_scheduler_type",
    "warmup_steps",
    "max_grad_norm",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
)
RUN_CONFIG = "finetune_config.json"


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _same_model(old: str, new: str, old_resolved: str | None) -> bool:
    if old == new:
        return True
    new_path = Path(new).expanduser()
    if not new_path.exists():
        return False
    candidates = [Path(p).expanduser() for p in (old, old_resolved) if p]
    return any(p.exists() and p.resolve() == new_path.resolve() for p in candidates)


def check_resumed_config(cfg: FinetuneConfig, checkpoint: str | None) -> list:
    """Refuse a resume whose flags differ from the run that wrote ``checkpoint``.

    The run's settings are read from ``finetune_config.json`` beside the checkpoint
    (what that run recorded). A different base model or adapter shape is always refused
    (the weights would not load, or would be another model's); changed optimisation
    flags are refused, each named with its old and new value, unless
    ``cfg.allow_changed_optimization``, in which case the new values are applied to the
    restored optimizer and scheduler (the returned callback does it), so that the run's
    ``finetune_config.json`` records what ran.

    Returns:
        the Trainer callbacks that apply the changed values (empty when none changed).

    Raises:
        ValueError: naming each changed flag, or a run config that does not parse.
    """
    if checkpoint is None:
        return []
    record = Path(checkpoint).parent / RUN_CONFIG
    if not record.is_file():
        logger.warning(
            "%s: no %s beside it: the resumed run's flags cannot be compared with the run "
            "that wrote it",
            checkpoint,
            RUN_CONFIG,
        )
        return []
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{record}: cannot read the run's recorded config: {exc}") from exc
    if not isinstance(old, dict):
        raise ValueError(f"{record}: the run's recorded config is not a JSON object")

    def changed(names) -> list[str]:
        return [
            f"--{n} {_plain(old[n])!r} -> {_plain(getattr(cfg, n))!r}"
            for n in names
            if n in old and _plain(old[n]) != _plain(getattr(cfg, n))
        ]

    provenance = old.get("provenance") if isinstance(old.get("provenance"), dict) else {}
    shape = changed(SHAPE_FLAGS)
    if "base_model" in old and not _same_model(
        str(old["base_model"]), cfg.base_model, provenance.get("resolved_base_model")
    ):
        shape.insert(0, f"--base_model {old['base_model']!r} -> {cfg.base_model!r}")
    if shape:
        raise ValueError(
            f"cannot resume {checkpoint}: its run ({record}) was trained with other "
            f"settings: {'; '.join(shape)}. Its weights belong to those settings; resume "
            "with the run's values, or start a new run (--overwrite_output_dir, or another "
            "--output_dir)"
        )
    optimization = changed(OPTIMIZATION_FLAGS)
    if not optimization:
        return []
    if not cfg.allow_changed_optimization:
        raise ValueError(
            f"cannot resume {checkpoint} with changed optimisation flags: "
            f"{'; '.join(optimization)} (old -> new; the restored optimizer and scheduler "
            "would keep the old values). Resume with the run's values, or pass "
            "--allow_changed_optimization to apply the new ones from here on"
        )
    logger.warning(
        "resuming %s with changed optimisation flags, applied from step on: %s",
        checkpoint,
        "; ".join(optimization),
    )
    return [_apply_optimization(cfg.learning_rate, cfg.weight_decay)]


def _apply_optimization(learning_rate: float, weight_decay: float):
    """A callback that puts the new learning rate and weight decay into the optimizer and
    scheduler the Trainer restored from the checkpoint (it runs once they are loaded).

    The schedule's shape (type, warm-up, length) and clipping, batch size and
    accumulation come from the new arguments anyway; the peak learning rate and the
    weight decay are what the restored state would otherwise keep."""
    from transformers import TrainerCallback

    class ApplyChangedOptimization(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
            if optimizer is None:
                return
            groups = optimizer.param_groups
            for i, group in enumerate(groups):
                group["initial_lr"] = learning_rate
                if i == 0 or group.get("weight_decay"):  # the Trainer's decay group is first
                    group["weight_decay"] = weight_decay
            lambdas = getattr(lr_scheduler, "lr_lambdas", None)
            if lambdas is None:
                for group in groups:
                    group["lr"] = learning_rate
                return
            lr_scheduler.base_lrs = [learning_rate] * len(groups)
            step = lr_scheduler.last_epoch
            for group, factor in zip(groups, lambdas, strict=False):
                group["lr"] = learning_rate * factor(step)
            lr_scheduler._last_lr = [group["lr"] for group in groups]

    return ApplyChangedOptimization()


# --- a full disk (issue 27.15) -------------------------------------------------------

_DISK_FULL = ("No space left on device", "StorageFull", "Disk quota exceeded")


def disk_full_error(exc: BaseException, output_dir: str | os.PathLike) -> OSError | None:
    """One clear error for a disk that filled up while the run saved (``torch.save``
    raises RuntimeError, safetensors its own error type), or None for any other error."""
    import errno

    chain, seen = exc, 0
    while chain is not None and seen < 8:
        full = isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT)
        if full or any(m in str(chain) for m in _DISK_FULL):
            break
        chain, seen = chain.__cause__ or chain.__context__, seen + 1
    else:
        return None
    if chain is None:
        return None
    done = latest_checkpoint(output_dir)
    kept = f"the last complete checkpoint is {done}" if done else "no checkpoint was complete"
    return OSError(
        errno.ENOSPC,
        f"the disk holding {output_dir} is full: saving failed ({type(exc).__name__}); {kept} "
        "(a half-written one is passed over). Free some space (or lower "
        "--save_total_limit), then continue with --resume_from_checkpoint=true",
    )
