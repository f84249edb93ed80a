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
        return str(found)
    if not (Path(value) / "trainer_state.json").is_file():
        raise ValueError(
            f"--resume_from_checkpoint: {value} is not a complete checkpoint (no trainer_state.json)"
        )
    return value


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
