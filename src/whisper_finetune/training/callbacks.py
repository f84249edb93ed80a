"""Trainer callbacks: AdaLoRA rank reallocation, per-epoch data seeding, safety checks.

They use only the public ``TrainerCallback`` hooks; nothing in the Trainer is patched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

# When set to a folder, every rank writes ``rank<N>.json`` there at the end of training:
# a digest of its trainable weights (DDP ranks must agree; the tests compare them).
WEIGHT_DIGEST_ENV = "WHISPER_FINETUNE_WEIGHT_DIGEST"


def _peft_base(model):
    """The peft tuner model (``LoraModel``/``AdaLoraModel``) under a possibly wrapped model."""
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "base_model", None)


def _lora_grads_finite(tuner) -> bool:
    """Whether every trainable adapter matrix has a gradient and it is finite."""
    import torch

    name = tuner.trainable_adapter_name
    for n, p in tuner.model.named_parameters():
        if (
            "lora_" in n
            and name in n
            and p.requires_grad
            and (p.grad is None or not bool(torch.isfinite(p.grad).all()))
        ):
            return False
    return True


class AdaLoraCallback(TrainerCallback):
    """Runs AdaLoRA's ``update_and_allocate`` after every optimizer step.

    The HF Trainer never calls it by itself (Whisper-Finetune#26), so without this
    callback AdaLoRA trains as a fixed-rank LoRA with an extra regulariser. The call sits
    between ``optimizer.step()`` and ``zero_grad()``, where the gradients that the
    importance scores need are still there. At the start of training the schedule's
    ``total_step`` is checked against the Trainer's real number of optimizer steps.
    """

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        tuner = _peft_base(model)
        config = tuner.peft_config[tuner.trainable_adapter_name]
        if state.max_steps and config.total_step != state.max_steps:
            logger.warning(
                "AdaLoRA total_step %d differs from the Trainer's %d optimizer steps; using %d",
                config.total_step,
                state.max_steps,
                state.max_steps,
            )
            config.total_step = state.max_steps
        if config.tinit + config.tfinal >= config.total_step:
            raise ValueError(
                "AdaLoRA: tinit + tfinal must be smaller than the number of optimizer steps"
            )

    def __init__(self):
        self.skipped_updates = 0

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        tuner = _peft_base(model)
        if not _lora_grads_finite(tuner):
            # the grad scaler skipped this step (fp16 overflow) or the step was dropped for
            # a non-finite loss: inf gradients would turn the importance averages into
            # NaN for good, so the importance update is skipped too
            self.skipped_updates += 1
            logger.warning(
                "AdaLoRA: non-finite or missing gradients at step %d; importance update skipped",
                state.global_step + 1,
            )
            return
        tuner.update_and_allocate(state.global_step)


class EpochSeedCallback(TrainerCallback):
    """Tells the training dataset which epoch starts, for its per-sample random streams."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))


class NonFiniteLossCallback(TrainerCallback):
    """Stops the run with an error when the logged loss is NaN or infinite.

    A NaN adapter saved as if training had succeeded is worse than a failed run.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise RuntimeError(
                f"training loss became {loss} at step {state.global_step}; lower --learning_rate, "
                f"use --precision=bf16/fp32, or check the data (the last checkpoint is unaffected)"
            )


def weight_digest(model) -> dict:
    """A digest of the trainable parameters: sha256 of their bytes plus their sum."""
    import torch

    sha = hashlib.sha256()
    total = 0.0
    count = 0
    for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        if not p.requires_grad:
            continue
        data = p.detach().to("cpu", torch.float32).contiguous()
        sha.update(name.encode())
        sha.update(data.numpy().tobytes())
        total += float(data.double().sum())
        count += data.numel()
    return {"sha256": sha.hexdigest(), "sum": total, "numel": count}


class WeightDigestCallback(TrainerCallback):
    """Writes each rank's weight digest at the end of training (see ``WEIGHT_DIGEST_ENV``)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        rank = int(os.environ.get("RANK", 0))
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = {
            "rank": rank,
            "global_step": state.global_step,
            **weight_digest(getattr(model, "module", model)),
        }
        (self.folder / f"rank{rank}.json").write_text(json.dumps(digest), encoding="utf-8")


class TrainClock(TrainerCallback):
    """Training seconds (evaluation and saving excluded) at every log and evaluation.

    ``points`` lists ``{"step", "train_seconds", **metrics}`` dicts: one per evaluation
    (with its ``eval_*`` metrics) and one per training log (with ``loss``), so a curve of
    error rate against training time can be drawn.
    """

    def __init__(self):
        import time

        self._now = time.perf_counter
        self.seconds = 0.0
        self._start: float | None = None
        self.points: list[dict] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.seconds += self._now() - self._start
            self._start = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        last = self.points[-1] if self.points else None
        if last is not None and last["step"] == state.global_step and "loss" not in last:
            last.update(metrics or {})  # the guard set's evaluation at the same step
        else:
            self.points.append(
                {"step": state.global_step, "train_seconds": self.seconds, **(metrics or {})}
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.points.append(
                {"step": state.global_step, "train_seconds": self.seconds, "loss": logs["loss"]}
            )
