"""Keeping the model near the base while it trains: the ``--anchor`` loss terms.

Fine-tuning on a narrow domain (here: synthetic speech) moves the model away from what
it knew (real speech). Scaling the merged adapter afterwards trades the new domain for
the old one; an anchor adds a term to the training loss instead, so the optimizer looks
for weights that learn the new domain *and* stay close to the base model:

* ``kd``: distillation toward the frozen base model (learning without forgetting). On
  every training batch the base model (the same network with its adapters switched
  off, no extra memory) predicts the label tokens too, and the loss adds
  ``weight * T^2 * KL(base || model)`` over the label positions, at temperature ``T``.
  It costs one more forward pass without gradients (about a third of a step).
* ``l2``: a penalty on how far the adapted weights moved, ``weight * mean ||dW||_F^2``
  over the adapted matrices, where ``dW = scaling * B @ A`` (computed through the r x r
  Gram matrices, so it costs nothing measurable). L2-SP, for LoRA.

Both need LoRA or AdaLoRA (the base weights are the adapter-free model). With
``rows="replay"`` (``--anchor_rows=replay``), ``kd`` is computed on a batch's replay rows
only (``finetune --replay_data``): the base model's predictions are kept where the audio
is the old domain, and the new domain's rows learn from their labels alone; the teacher
pass then runs on those rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

ANCHORS = ("none", "kd", "l2")


@dataclass(frozen=True)
class Anchor:
    """One anchor term; see the module docstring.

    Attributes:
        kind: ``kd`` or ``l2``.
        weight: the term's weight in the loss.
        temperature: softmax temperature of ``kd``.
    """

    kind: str
    weight: float
    temperature: float = 1.0
    rows: str = "all"  # "all", or "replay": kd on the batch's replay rows only

    def __post_init__(self):
        if self.kind not in ANCHORS[1:]:
            raise ValueError(f"--anchor must be one of {ANCHORS}, got {self.kind!r}")
        if self.weight <= 0:
            raise ValueError(f"--anchor_weight must be > 0 with --anchor={self.kind}")
        if self.temperature <= 0:
            raise ValueError("--anchor_temperature must be > 0")
        if self.rows not in ("all", "replay"):
            raise ValueError(f"--anchor_rows must be all or replay, got {self.rows!r}")
        if self.rows == "replay" and self.kind != "kd":
            raise ValueError("--anchor_rows=replay needs --anchor=kd")

    def loss(self, model, inputs: dict, outputs, replay_rows=None):
        """The weighted anchor term for one batch (a scalar tensor with gradients).

        ``replay_rows`` (a bool tensor, one per sample) limits ``kd`` to those rows when
        ``rows == "replay"``; a batch without replay rows then adds nothing.
        """
        if self.kind == "kd":
            if self.rows == "replay":
                if replay_rows is None:
                    raise ValueError(
                        "--anchor_rows=replay: the batch has no replay rows (--replay_data)"
                    )
                if not bool(replay_rows.any()):
                    return outputs.logits.sum() * 0.0
                rows = replay_rows.to(outputs.logits.device)
                picked = {
                    k: v[rows] if hasattr(v, "shape") and v.shape[:1] == rows.shape else v
                    for k, v in inputs.items()
                }
                logits = outputs.logits[rows]
                return self.weight * distillation_loss(model, picked, logits, self.temperature)
            return self.weight * distillation_loss(model, inputs, outputs.logits, self.temperature)
        return self.weight * delta_penalty(model)


def distillation_loss(model, inputs: dict, logits, temperature: float = 1.0):
    """``T^2 * KL(base || model)`` averaged over label tokens; the base is ``model`` without adapters."""
    import torch
    import torch.nn.functional as F

    mask = inputs["labels"] != -100
    if not bool(mask.any()):
        return logits.sum() * 0.0
    with torch.no_grad(), model.disable_adapter():
        teacher = model(**inputs).logits
    student = logits[mask].float() / temperature
    target = teacher[mask].float() / temperature
    kl = F.kl_div(
        F.log_softmax(student, dim=-1),
        F.log_softmax(target, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return kl * temperature**2


def delta_penalty(model):
    """Mean squared Frobenius norm of ``scaling * B @ A`` over the active LoRA/AdaLoRA layers."""
    terms = []
    for module in model.modules():
        a, b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if a is None or b is None or not hasattr(module, "scaling"):
            continue
        for name in a:
            if name not in b:
                continue
            A, B = _weight(a[name]), _weight(b[name])
            scale = module.scaling[name]
            if hasattr(module, "lora_E"):  # AdaLoRA: dW = B @ (A * E) * scaling / ranknum
                A = A * module.lora_E[name]
                scale = scale / (float(module.ranknum[name]) + 1e-5)
            # ||B A||_F^2 = sum((B^T B) * (A A^T)): r x r, never d x d
            terms.append(scale**2 * ((B.t() @ B) * (A @ A.t())).sum())
    if not terms:
        raise ValueError(
            "--anchor=l2 found no LoRA/AdaLoRA layers: it needs --method=lora or adalora"
        )
    return sum(terms) / len(terms)


def _weight(p):
    return p.weight if hasattr(p, "weight") else p
