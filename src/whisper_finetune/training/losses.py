"""Extra training-loss terms, and what happens when the loss is not a finite number.

* :func:`adalora_orth_reg` is AdaLoRA's orthogonal regularizer. peft adds it in
  ``AdaLoraModel.forward``, which a ``PeftModel`` built without a task type never calls
  (it calls the Whisper model directly), so ``orth_reg_weight`` did nothing. The trainer
  adds it in :meth:`~whisper_finetune.training.trainer.WhisperTrainer.compute_loss`.
* :class:`NonFiniteGuard` skips an optimizer step whose loss was NaN or infinite (fp16
  overflow, a broken sample) with a warning naming the batch's manifest lines, and stops
  the run after ``max_steps`` such steps.
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


def _unwrap(model):
    return getattr(model, "module", model)  # DDP


def adalora_orth_reg(model):
    """``orth_reg_weight * mean ||P P^T - I||_F`` over the AdaLoRA ``lora_A``/``lora_B``.

    The same quantity as peft's ``AdaLoraModel.forward`` (peft 0.21): ``A A^T`` for
    ``lora_A``, ``B^T B`` for ``lora_B``, averaged over the matrices of the trainable
    adapter, times the adapter's ``orth_reg_weight``.
    """
    import torch

    tuner = _unwrap(model).base_model  # the AdaLoraModel
    name = tuner.trainable_adapter_name
    weight = tuner.peft_config[name].orth_reg_weight
    total, count = None, 0
    for n, p in tuner.model.named_parameters():
        if ("lora_A" in n or "lora_B" in n) and name in n and p.numel():
            cov = p @ p.T if "lora_A" in n else p.T @ p
            eye = torch.eye(*cov.shape, dtype=cov.dtype, device=cov.device)
            term = torch.norm(cov - eye, p="fro")
            total = term if total is None else total + term
            count += 1
    if not count or not weight:
        return 0.0
    return weight * total / count


class NonFiniteGuard(TrainerCallback):
    """Skips optimizer steps whose loss was not finite; stops after ``max_steps`` of them.

    :meth:`check` runs on every training loss. A non-finite one is replaced by a zero
    that still reaches every trainable parameter (so backward, gradient accumulation and
    DDP's all-reduce run as usual) and marks the optimizer step; before that step the
    gradients are dropped (``None``: AdamW leaves the parameters and its moments alone),
    or, under fp16 loss scaling without clipping, set to NaN so that the grad scaler
    skips the step.
    """

    def __init__(self, max_steps: int = 10):
        if max_steps < 0:
            raise ValueError(f"max_nonfinite_steps must be >= 0, got {max_steps}")
        self.max_steps = max_steps
        self.skipped = 0
        self._bad = False
        self.bad_origins: list[str] = []

    def check(self, loss, model, origins, step: int):
        import torch

        if bool(torch.isfinite(loss.detach()).all()):
            return loss
        where = ", ".join(origins) if origins else "(no manifest lines: samples without origin)"
        logger.warning(
            "step %d: the loss is %s on the batch of %s; skipping this optimizer step",
            step + 1,
            float(loss.detach().float().mean()),
            where,
        )
        self._bad = True
        self.bad_origins.extend(origins or [])
        params = [p for p in model.parameters() if p.requires_grad]
        return sum((p.view(-1)[:1] * 0).sum() for p in params)

    def _any_rank_bad(self, device) -> bool:
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            flag = torch.tensor([1.0 if self._bad else 0.0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())
        return self._bad

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        params = [p for p in _unwrap(model).parameters() if p.requires_grad]
        if not params or not self._any_rank_bad(params[0].device):
            return
        self._bad = False
        self.skipped += 1
        # with clipping, the grad scaler has already unscaled (and checked) the gradients;
        # without it, it checks them inside its step and needs some to check
        scaler_checks_later = args.fp16 and not args.max_grad_norm
        for p in params:
            if scaler_checks_later and p.grad is not None:
                p.grad.fill_(float("nan"))  # the grad scaler skips the step
            else:
                p.grad = None  # the optimizer leaves the parameter and its moments alone
        if self.skipped > self.max_steps:
            raise RuntimeError(
                f"{self.skipped} optimizer steps had a non-finite loss (last at step "
                f"{state.global_step + 1}; batches from {', '.join(self.bad_origins[-8:])}); "
                f"stopping. Lower --learning_rate, use --precision=bf16/fp32, check those "
                f"samples, or raise --max_nonfinite_steps"
            )
