"""Building the model to train: full fine-tuning, LoRA or AdaLoRA on Whisper.

* Adapters go on ``target_modules`` (``q_proj k_proj v_proj out_proj fc1 fc2`` by
  default) in the encoder, the decoder or both (``lora_layers``), or wherever a regex
  matches. Decoder-only adapters are the cheapest (no backward pass through the
  encoder) and the first knob against forgetting acoustic knowledge.
* The adapter config stores the base model under the name the user gave
  (``embedded:whisper-base``, a hub id, or an absolute folder), so ``merge`` finds it
  again through :func:`whisper_finetune.models.resolve.resolve_model`.
* 8-bit loading imports bitsandbytes lazily and only on CUDA;
  ``prepare_model_for_kbit_training`` runs only then.
* Gradient checkpointing is left to the Trainer with ``use_reentrant=False``: with
  the non-reentrant variant, frozen conv layers in front of the first adapter need no
  ``requires_grad`` hook (the reentrant one fails with "element 0 of tensors does not
  require grad", peft#617), and a hook would make decoder-only LoRA backpropagate
  through the whole frozen encoder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import warnings
from pathlib import Path

from whisper_finetune.training.config import FinetuneConfig, adalora_total_step

logger = logging.getLogger(__name__)

_LAYER_SCOPES = ("all", "encoder", "decoder")


def target_modules_regex(
    target_modules: tuple[str, ...], lora_layers: str = "all"
) -> str | list[str]:
    """The peft ``target_modules`` value for module names and a layer scope.

    Args:
        target_modules: leaf module names such as ``q_proj``.
        lora_layers: ``all``, ``encoder``, ``decoder``, or a regex that the full module
            path (``model.decoder.layers.3.self_attn.q_proj``) must match somewhere.

    Returns:
        The plain list for ``all``; otherwise one regex that peft full-matches.
    """
    names = "|".join(re.escape(m) for m in target_modules)
    if lora_layers == "all":
        return list(target_modules)
    if lora_layers in ("encoder", "decoder"):
        # anchored on the stack, so "encoder" does not match the decoder's encoder_attn
        return rf"(?:.*\.)?model\.{lora_layers}\.layers\.\d+\.(?:.*\.)?(?:{names})"
    re.compile(lora_layers)  # a bad regex fails here, with its own message
    return rf"(?=.*(?:{lora_layers}))(?:.*\.)?(?:{names})"


def stored_base_name(name: str) -> str:
    """How the base model is recorded in the adapter config (absolute for folders)."""
    path = Path(name).expanduser()
    if not name.startswith("embedded:") and path.exists():
        return str(path.resolve())
    return name


def _check_8bit() -> None:
    import torch

    if not torch.cuda.is_available():
        raise ValueError("--use_8bit needs a CUDA GPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("--use_8bit needs bitsandbytes: pip install bitsandbytes")


def load_base_model(cfg: FinetuneConfig, model_path: str):
    """Load the transformers Whisper model with training settings applied."""
    import torch
    from transformers import WhisperForConditionalGeneration

    # trainable weights in float32 whatever the checkpoint's dtype (transformers 5 loads
    # dtype="auto": the official large checkpoints are fp16, which breaks fp16 AMP and
    # makes AdamW update fp16 weights); autocast handles fp16/bf16 compute
    kwargs = {"dtype": torch.float32}
    if cfg.use_8bit:
        _check_8bit()
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = WhisperForConditionalGeneration.from_pretrained(model_path, **kwargs)
    # the cache is useless in training and clashes with checkpointing
    model.config.use_cache = False
    # Whisper's forward takes **kwargs, so the Trainer would assume it sums its loss over
    # ``num_items_in_batch`` and then skip dividing by the accumulation steps (and scale
    # by the world size under DDP). Whisper returns a plain mean: say so.
    model.accepts_loss_kwargs = False
    model.config.apply_spec_augment = cfg.apply_spec_augment
    if cfg.apply_spec_augment:
        model.config.mask_time_prob = cfg.mask_time_prob
        model.config.mask_time_length = cfg.mask_time_length
        model.config.mask_feature_prob = cfg.mask_feature_prob
        model.config.mask_feature_length = cfg.mask_feature_length
    return model


def peft_config(cfg: FinetuneConfig, total_step: int):
    """The peft ``LoraConfig``/``AdaLoraConfig`` for ``cfg``."""
    from peft import AdaLoraConfig, LoraConfig

    layers = "decoder" if cfg.freeze_encoder and cfg.lora_layers == "all" else cfg.lora_layers
    if cfg.freeze_encoder and layers not in ("decoder",):
        layers = rf"model\.decoder\..*(?:{layers})"
    targets = target_modules_regex(cfg.target_modules, layers)
    if cfg.method == "lora":
        return LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets,
            bias="none",
        )
    tinit, tfinal = adalora_schedule(total_step, cfg.adalora_tinit, cfg.adalora_tfinal)
    return AdaLoraConfig(
        init_r=cfg.adalora_init_r,
        target_r=cfg.adalora_target_r,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=min(cfg.adalora_delta_t, max(1, (total_step - tinit - tfinal) // 2)),
        beta1=0.85,
        beta2=0.85,
        orth_reg_weight=cfg.adalora_orth_reg_weight,
        total_step=total_step,
        lora_alpha=adalora_alpha(cfg),
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
    )


def adalora_alpha(cfg: FinetuneConfig) -> int:
    """AdaLoRA's alpha: given, or ``2 * init_r`` (LoRA's scale ``alpha / r = 2``)."""
    return cfg.adalora_alpha if cfg.adalora_alpha is not None else 2 * cfg.adalora_init_r


def adalora_schedule(total_step: int, tinit: int | None, tfinal: int | None) -> tuple[int, int]:
    """AdaLoRA's warm-up and final phases; defaults are 10 % and 20 % of the steps.

    Raises:
        ValueError: when no budgeting phase remains (``tinit + tfinal >= total_step``).
    """
    tinit = round(0.1 * total_step) if tinit is None else tinit
    tfinal = round(0.2 * total_step) if tfinal is None else tfinal
    if tinit + tfinal >= total_step:
        raise ValueError(
            f"AdaLoRA needs steps to reallocate ranks in: tinit ({tinit}) + tfinal ({tfinal}) "
            f">= total steps ({total_step}); lower --adalora_tinit/--adalora_tfinal or train longer"
        )
    return tinit, tfinal


def build_model(cfg: FinetuneConfig, model_path: str, n_train_samples: int, world_size: int = 1):
    """The model to hand to the Trainer.

    Args:
        cfg: resolved config.
        model_path: local folder of the base model (from ``resolve_model``).
        n_train_samples: training samples after filtering (AdaLoRA's schedule).
        world_size: number of processes (AdaLoRA's schedule).

    Returns:
        A ``WhisperForConditionalGeneration`` (full) or a ``PeftModel``.
    """
    model = load_base_model(cfg, model_path)
    if cfg.method == "full":
        if cfg.freeze_encoder:
            model.freeze_encoder()
        _log_trainable(model)
        return model
    from peft import get_peft_model

    if cfg.use_8bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing
        )
    total_step = adalora_total_step(
        n_train_samples,
        cfg.per_device_train_batch_size,
        cfg.gradient_accumulation_steps,
        world_size,
        cfg.num_train_epochs,
        cfg.max_steps,
    )
    with warnings.catch_warnings():
        # peft 0.21 still calls transformers' deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        model = get_peft_model(model, peft_config(cfg, total_step))
    model.peft_config["default"].base_model_name_or_path = stored_base_name(cfg.base_model)
    _log_trainable(model)
    return model


def _log_trainable(model) -> None:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if trainable == 0:
        raise ValueError(
            "nothing to train: no parameter requires a gradient (check --target_modules/--lora_layers)"
        )
    logger.info(
        "trainable parameters: %s of %s (%.2f%%)",
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )
