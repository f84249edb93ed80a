"""The fine-tuning configuration: one frozen dataclass, one field per command-line flag.

``whisper-finetune finetune`` builds a :class:`FinetuneConfig` from its flags (the
field name is the flag: ``--lora_r=16``); library users build it directly. Defaults live
here only. :meth:`FinetuneConfig.resolved` fills the ``auto`` values for the machine it
runs on and validates the combination once; the result is saved as
``finetune_config.json`` in the output folder. This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("lora", "adalora", "full")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def _f(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002
    """A dataclass field with flag help (and optional aliases/choices)."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for list defaults (the config is frozen)")
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything one fine-tuning run needs. See ``whisper-finetune finetune --help``."""

    # ---- model and data ----
    base_model: str = _f(
        "embedded:whisper-base", "base model: local folder, hub id, or embedded:whisper-base"
    )
    train_data: str = _f("", "training manifest (JSON list or JSON Lines)")
    test_data: str | None = _f(None, "evaluation manifest: eval loss and CER every --eval_steps")
    output_dir: str = _f("output", "run folder: checkpoints, final model, logs, config")
    language: str = _f("zh", "default language (code or name) for records without one")
    task: str = _f("transcribe", "Whisper task", choices=("transcribe", "translate"))
    min_duration: float = _f(
        0.5, "skip clips shorter than this (seconds)", aliases=("min_audio_len",)
    )
    max_duration: float = _f(
        30.0, "skip clips longer than this (seconds, at most 30)", aliases=("max_audio_len",)
    )
    timestamp_ratio: float = _f(
        0.0, "share of records with 'sentences' trained with timestamp tokens (0..1)"
    )
    prompt_ratio: float = _f(
        0.0,
        "share of training samples given a <|startofprev|> prompt (the previous slice's "
        "text, else --prompt_file phrases), with no loss on it (0..1)",
    )
    prompt_file: str | None = _f(
        None, "domain phrases, one per line, drawn as prompts by --prompt_ratio"
    )
    skip_bad_samples: bool = _f(
        False, "skip unreadable audio/bad records (listed in data_report.json) instead of stopping"
    )
    verify_audio: bool = _f(
        True, "decode every clip before training (exact durations, bad files found early)"
    )
    cache_features: bool | None = _f(
        None,
        "keep log-mels in memory across epochs (~1 MB/clip; never with --augment_config; default: when the training set needs < 2 GB)",
    )
    max_eval_samples: int | None = _f(None, "evaluate on at most this many test (and guard) clips")
    # ---- augmentation ----
    augment_config: str | None = _f(
        None,
        "JSON/YAML list of waveform augmentations {type, params, prob}",
        aliases=("augment_config_path",),
    )
    apply_spec_augment: bool = _f(
        False, "SpecAugment inside the model (masks log-mel time/feature spans)"
    )
    mask_time_prob: float = _f(0.05, "SpecAugment: share of time steps masked")
    mask_time_length: int = _f(10, "SpecAugment: length of a time mask (frames)")
    mask_feature_prob: float = _f(0.0, "SpecAugment: share of mel bins masked")
    mask_feature_length: int = _f(10, "SpecAugment: length of a feature mask (bins)")
    # ---- method ----
    method: str = _f("lora", "what to train", choices=METHODS)
    use_adalora: bool = _f(False, "upstream spelling of --method=adalora")
    lora_r: int = _f(32, "LoRA rank")
    lora_alpha: int = _f(64, "LoRA alpha (scaling = alpha / r; usually 2 * r)")
    lora_dropout: float = _f(0.05, "dropout on the LoRA input")
    target_modules: tuple[str, ...] = _f(DEFAULT_TARGET_MODULES, "module names that get adapters")
    lora_layers: str = _f(
        "all", "where adapters go: all, encoder, decoder, or a regex the module path must match"
    )
    adalora_init_r: int = _f(12, "AdaLoRA: initial rank per module")
    adalora_target_r: int = _f(4, "AdaLoRA: average target rank after reallocation")
    adalora_tinit: int | None = _f(
        None, "AdaLoRA: warm-up steps before pruning (default 10%% of the steps)"
    )
    adalora_tfinal: int | None = _f(
        None, "AdaLoRA: final steps with fixed ranks (default 20%% of the steps)"
    )
    adalora_delta_t: int = _f(10, "AdaLoRA: steps between rank reallocations")
    adalora_orth_reg_weight: float = _f(0.5, "AdaLoRA: orthogonality regularisation weight")
    adalora_alpha: int | None = _f(
        None,
        "AdaLoRA: alpha (scaling = alpha / init_r); default 2 * --adalora_init_r, the same "
        "scale as LoRA's default (--lora_alpha is LoRA's and is not used by AdaLoRA)",
    )
    freeze_encoder: bool = _f(
        False, "train nothing in the encoder (full: frozen weights; LoRA: decoder-only adapters)"
    )
    use_8bit: bool = _f(False, "load base weights in 8 bit (CUDA + bitsandbytes only)")
    gradient_checkpointing: bool = _f(
        False, "recompute activations in the backward pass: far less memory, ~20-30%% slower"
    )
    # ---- optimisation ----
    num_train_epochs: float = _f(3.0, "epochs (ignored when --max_steps > 0)")
    max_steps: int = _f(-1, "optimizer steps; overrides --num_train_epochs when > 0")
    per_device_train_batch_size: int = _f(8, "training batch size per process")
    per_device_eval_batch_size: int = _f(8, "evaluation batch size per process")
    learning_rate: float | None = _f(
        None, "peak learning rate (default 1e-3 for LoRA/AdaLoRA, 1e-5 for full)"
    )
    warmup_steps: int = _f(50, "linear warm-up steps")
    gradient_accumulation_steps: int = _f(1, "batches per optimizer step")
    lr_scheduler_type: str = _f("linear", "learning-rate schedule (a transformers scheduler name)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping (0: off)")
    optim: str = _f(
        "adamw_torch", "optimizer, a transformers name (adamw_torch_fused: fused AdamW kernels)"
    )
    precision: str = _f(
        "auto",
        "auto: bf16 on CUDA that has it, else fp16 on CUDA, fp32 on CPU (bf16 autocast also runs on CPUs with avx512_bf16/AMX, faster)",
        choices=PRECISIONS,
    )
    device: str = _f(
        "auto", "auto (CUDA when available), cpu or cuda", choices=("auto", "cpu", "cuda")
    )
    num_workers: int | None = _f(
        None,
        "dataloader workers (default: 0 on CPU; on CUDA what the model needs to keep the GPU "
        "busy, capped by the cores per GPU: see whisper_finetune.data.workers)",
    )
    num_threads: int | None = _f(None, "torch CPU threads per process (default: torch's choice)")
    seed: int = _f(42, "random seed (data order, dropout, augmentation)")
    # ---- logging, evaluation, checkpoints ----
    logging_steps: int = _f(10, "log loss and learning rate every N steps")
    eval_steps: int | None = _f(None, "evaluate every N steps (default: --save_steps)")
    save_steps: int = _f(500, "save a checkpoint every N steps")
    save_total_limit: int | None = _f(5, "keep at most N checkpoints (the best one is always kept)")
    metric: str = _f(
        "cer",
        "error rate used for evaluation and best-checkpoint selection",
        choices=("cer", "wer"),
    )
    generation_max_length: int | None = _f(
        None,
        "max tokens generated per clip during evaluation, prompt included; default: twice "
        "the batch's longest label, at most 448 (a fixed 128 cut packed 28 s windows short)",
    )
    max_nonfinite_steps: int = _f(
        10,
        "skip optimizer steps whose loss is NaN/inf (with a warning naming the samples); "
        "stop the run after this many",
    )
    report_to: tuple[str, ...] = _f(
        ("tensorboard",), "logging integrations (tensorboard, none, ...)"
    )
    resume_from_checkpoint: str | None = _f(
        None, "checkpoint folder, or 'true' for the latest complete one in --output_dir"
    )
    overwrite_output_dir: bool = _f(
        False, "start a new run in an --output_dir that already holds checkpoints"
    )
    allow_changed_optimization: bool = _f(
        False,
        "resume even though optimisation flags (learning rate, schedule, batch size, ...) "
        "differ from the checkpoint's run: the new values are applied from the resumed step",
    )
    # ---- forgetting guard ----
    guard_data: str | None = _f(
        None, "second eval set (e.g. real speech), logged as eval_guard_<metric>"
    )
    guard_max_increase: float | None = _f(
        None, "prefer checkpoints whose guard error rate stays within base + this"
    )
    anchor: str = _f(
        "none",
        "keep the model near the base while training: kd (distil toward the base model's "
        "predictions, +1 forward pass a step), l2 (penalise the adapter's weight change), or none",
        choices=("none", "kd", "l2"),
    )
    anchor_weight: float = _f(1.0, "weight of the --anchor term in the loss")
    anchor_temperature: float = _f(1.0, "softmax temperature of --anchor=kd")
    anchor_rows: str = _f(
        "all",
        "rows of a batch --anchor=kd distils on: all, or replay (the --replay_data rows only)",
        choices=("all", "replay"),
    )
    replay_data: str | None = _f(
        None,
        "a manifest mixed into every training batch (e.g. real speech pseudo-labelled by the "
        "base model: prepare pseudo-label), so the model keeps hearing the old domain",
    )
    replay_ratio: float = _f(
        0.25,
        "replay clips added to every batch per training clip (at least one): 0.25 with batch "
        "size 4 adds 1",
    )

    def __post_init__(self):
        if self.use_adalora:
            if self.method not in ("lora", "adalora"):
                raise ValueError(f"--use_adalora contradicts --method={self.method}")
            object.__setattr__(self, "method", "adalora")
            object.__setattr__(self, "use_adalora", False)
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if isinstance(self.report_to, (list, str)):
            value = (self.report_to,) if isinstance(self.report_to, str) else tuple(self.report_to)
            object.__setattr__(self, "report_to", value)

    # ---- derived values ----

    @property
    def uses_peft(self) -> bool:
        return self.method in ("lora", "adalora")

    @property
    def selection_metric(self) -> str | None:
        """Name of the metric (without ``eval_``) the best checkpoint is chosen by."""
        if not self.test_data:
            return None
        if self.guard_data and self.guard_max_increase is not None:
            return f"guarded_{self.metric}"
        return self.metric

    def resolved(
        self, cuda_available: bool | None = None, bf16_supported: bool | None = None
    ) -> FinetuneConfig:
        """Fill ``auto``/``None`` values for this machine and validate the whole config.

        Args:
            cuda_available: override CUDA detection (tests).
            bf16_supported: override bf16 detection (tests).

        Raises:
            ValueError: for impossible settings, naming the flag.
        """
        if cuda_available is None or bf16_supported is None:
            import torch

            cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
            if bf16_supported is None:
                bf16_supported = cuda_available and torch.cuda.is_bf16_supported()
        on_cuda = cuda_available and self.device != "cpu"
        if self.device == "cuda" and not cuda_available:
            raise ValueError("--device=cuda, but CUDA is not available")
        precision = self.precision
        if precision == "auto":
            precision = ("bf16" if bf16_supported else "fp16") if on_cuda else "fp32"
        if precision == "fp16" and not on_cuda:
            raise ValueError(
                "--precision=fp16 needs CUDA; use fp32 (or bf16 where the CPU supports it)"
            )
        if self.use_8bit and not on_cuda:
            raise ValueError(
                "--use_8bit needs a CUDA GPU (bitsandbytes); it is not available on CPU"
            )
        if self.use_8bit and self.method == "full":
            raise ValueError("--use_8bit works with --method=lora or adalora only")
        from whisper_finetune.data.workers import default_num_workers

        values: dict[str, Any] = {
            "precision": precision,
            "device": "cuda" if on_cuda else "cpu",
            "num_workers": self.num_workers
            if self.num_workers is not None
            else default_num_workers(self.base_model, on_cuda),
            "learning_rate": self.learning_rate or (1e-5 if self.method == "full" else 1e-3),
            "eval_steps": self.eval_steps or self.save_steps,
        }
        if isinstance(self.resume_from_checkpoint, str) and self.resume_from_checkpoint.lower() in (
            "false",
            "no",
            "0",
        ):
            values["resume_from_checkpoint"] = None
        out = dataclasses.replace(self, **values)
        out.validate()
        return out

    def validate(self) -> None:
        """Raise ValueError for settings that cannot work together."""
        if not self.train_data:
            raise ValueError("--train_data is required")
        if not 0.0 <= self.timestamp_ratio <= 1.0:
            raise ValueError(f"--timestamp_ratio must be in [0, 1], got {self.timestamp_ratio}")
        if not 0.0 <= self.prompt_ratio <= 1.0:
            raise ValueError(f"--prompt_ratio must be in [0, 1], got {self.prompt_ratio}")
        if self.prompt_file and not self.prompt_ratio:
            raise ValueError("--prompt_file is used only with --prompt_ratio > 0")
        if not 0 < self.max_duration <= 30:
            raise ValueError(
                f"--max_duration must be in (0, 30] seconds (Whisper's window), got {self.max_duration}"
            )
        if self.min_duration > self.max_duration:
            raise ValueError("--min_duration exceeds --max_duration")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError("give --max_steps > 0 or --num_train_epochs > 0")
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
            "save_steps",
            "lora_r",
            "adalora_init_r",
            "adalora_target_r",
            "adalora_delta_t",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive")
        if self.adalora_alpha is not None and self.adalora_alpha <= 0:
            raise ValueError("--adalora_alpha must be positive")
        if self.generation_max_length is not None and not 0 < self.generation_max_length <= 448:
            raise ValueError("--generation_max_length must be in 1..448 (Whisper's context)")
        if self.max_nonfinite_steps < 0:
            raise ValueError("--max_nonfinite_steps must be >= 0")
        if self.adalora_target_r > self.adalora_init_r:
            raise ValueError("--adalora_target_r must not exceed --adalora_init_r")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError("--lora_dropout must be in [0, 1)")
        if self.freeze_encoder and self.uses_peft and self.lora_layers == "encoder":
            raise ValueError("--freeze_encoder with --lora_layers=encoder leaves nothing to train")
        if self.eval_steps and self.test_data and self.save_steps % self.eval_steps:
            raise ValueError(
                "--save_steps must be a multiple of --eval_steps (the best checkpoint is chosen at evaluations)"
            )
        if self.guard_data and not self.test_data:
            raise ValueError(
                "--guard_data needs --test_data (it is watched at the same evaluations)"
            )
        if self.anchor != "none" and not self.uses_peft:
            raise ValueError(
                f"--anchor={self.anchor} needs --method=lora or adalora (the base is the adapter-free model)"
            )
        if self.anchor != "none" and (self.anchor_weight <= 0 or self.anchor_temperature <= 0):
            raise ValueError("--anchor_weight and --anchor_temperature must be > 0")
        if self.anchor_rows == "replay" and (self.anchor != "kd" or not self.replay_data):
            raise ValueError("--anchor_rows=replay needs --anchor=kd and --replay_data")
        if self.replay_data and not 0 < self.replay_ratio <= 4:
            raise ValueError(f"--replay_ratio must lie in (0, 4], got {self.replay_ratio}")
        if self.guard_max_increase is not None and (
            not self.guard_data or self.guard_max_increase < 0
        ):
            raise ValueError("--guard_max_increase needs --guard_data and must be >= 0")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike, **extra: Any) -> Path:
        """Write the config (plus ``extra`` keys, e.g. provenance) as JSON, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(
            json.dumps({**self.to_json(), **extra}, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        os.replace(tmp, path)
        return path


def adalora_total_step(
    n_samples: int,
    per_device_batch_size: int,
    gradient_accumulation_steps: int = 1,
    world_size: int = 1,
    num_train_epochs: float = 1.0,
    max_steps: int = -1,
) -> int:
    """Optimizer steps of a run, which AdaLoRA's rank schedule is laid out over.

    Upstream counted samples (``epochs * len(dataset)``), which stretched the schedule
    by ``batch * accumulation`` and never reached the final ranks. Here one step is one
    optimizer update: ``ceil(n / (batch * accumulation * world)) * epochs``, or
    ``max_steps`` when that is set.

    Args:
        n_samples: training samples (after filtering).
        per_device_batch_size: batch size per process.
        gradient_accumulation_steps: batches per optimizer step.
        world_size: number of processes.
        num_train_epochs: epochs (may be fractional).
        max_steps: when > 0, the answer.

    Returns:
        The number of optimizer steps (at least 1).
    """
    if max_steps > 0:
        return max_steps
    per_step = per_device_batch_size * gradient_accumulation_steps * world_size
    return max(1, math.ceil(math.ceil(n_samples / per_step) * num_train_epochs))
