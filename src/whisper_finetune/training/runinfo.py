"""What a training run recorded about an adapter: its config and its evaluation figures.

An adapter folder is a run's ``final/`` or ``checkpoint-N/``; the run folder above it
holds ``finetune_config.json`` (written first by every run), ``trainer_state.json`` (the
log with every evaluation) and ``guard_baseline.json`` (the base model's error on the
guard set). ``merge`` reads them to write the merged model's language, task and card.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

CONFIG_FILE = "finetune_config.json"
STATE_FILE = "trainer_state.json"
GUARD_FILE = "guard_baseline.json"


@dataclass(frozen=True)
class RunInfo:
    """The parts of a run ``merge`` uses (empty when the adapter came from elsewhere)."""

    config: dict = field(default_factory=dict)
    config_path: Path | None = None
    step: int | None = None
    eval_value: float | None = None
    guard_value: float | None = None
    guard_baseline: float | None = None

    @property
    def metric(self) -> str:
        return str(self.config.get("metric") or "cer")


def _find(adapter_dir: Path, name: str) -> Path | None:
    for folder in (adapter_dir, adapter_dir.parent):
        if (folder / name).is_file():
            return folder / name
    return None


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def read_run(adapter_dir: str | Path) -> RunInfo:
    """The run an adapter folder belongs to: its config, and the evaluation at its step.

    The step is ``N`` for ``checkpoint-N``, else the run's best step (what ``final/``
    holds when the run evaluated), else its last. Files that are missing leave their
    fields None; files that exist but do not parse raise ValueError naming them.
    """
    adapter_dir = Path(adapter_dir)
    config_path = _find(adapter_dir, CONFIG_FILE)
    config = _load(config_path) if config_path else {}
    if not isinstance(config, dict):
        raise ValueError(f"{config_path}: expected a JSON object")
    info = {"config": config, "config_path": config_path}
    state_path = _find(adapter_dir, STATE_FILE)
    if state_path is not None:
        state = _load(state_path)
        match = re.fullmatch(r"checkpoint-(\d+)", adapter_dir.name)
        step = (
            int(match.group(1))
            if match
            else state.get("best_global_step") or state.get("global_step")
        )
        metric = str(config.get("metric") or "cer")
        evals: dict = {}
        for entry in state.get("log_history", []):
            if entry.get("step") == step:
                evals.update(entry)
        info.update(
            step=step,
            eval_value=evals.get(f"eval_{metric}"),
            guard_value=evals.get(f"eval_guard_{metric}"),
        )
    guard_path = _find(adapter_dir, GUARD_FILE)
    if guard_path is not None:
        info["guard_baseline"] = _load(guard_path).get("value")
    if config_path is None:
        logger.warning(
            "%s: no %s here or in the folder above: the merged model's language, task and "
            "card come from the flags only",
            adapter_dir,
            CONFIG_FILE,
        )
    return RunInfo(**info)


def card_details(config: dict) -> dict:
    """The few training settings a model card lists."""
    keys = ("lora_r", "lora_alpha", "learning_rate", "max_steps", "num_train_epochs")
    if config.get("method") == "full":
        keys = ("learning_rate", "max_steps", "num_train_epochs")
    return {k: config[k] for k in keys if config.get(k) not in (None, -1)}
