"""``whisper-finetune finetune``: fine-tune Whisper (LoRA, AdaLoRA or full) on manifests.

Replaces the original ``finetune.py``. Every option of
:class:`whisper_finetune.training.train.FinetuneConfig` is a flag of the same name; the Trainer
flags keep their usual names. The same command runs on several processes under
``torchrun --nproc_per_node=N -m whisper_finetune finetune ...`` or
``accelerate launch -m whisper_finetune finetune ...`` (DDP; gloo on CPU).

Examples::

    whisper-finetune finetune --base_model=embedded:whisper-base \\
        --train_data=dataset/train.jsonl --test_data=dataset/test.jsonl --output_dir=output/base-lora
    whisper-finetune finetune --base_model=openai/whisper-small --method=adalora \\
        --train_data=dataset/train.jsonl --test_data=dataset/test.jsonl --output_dir=output/small-ada \\
        --guard_data=dataset/real_dev.jsonl --guard_max_increase=0.01 --timestamp_ratio=0.5
    whisper-finetune finetune ... --output_dir=output/base-lora --resume_from_checkpoint=true
"""

from __future__ import annotations

import argparse
import json
import logging

from whisper_finetune.cli._args import add_command, dataclass_from_args
from whisper_finetune.training.config import FinetuneConfig

logger = logging.getLogger(__name__)


def _run(args: argparse.Namespace) -> int:
    from whisper_finetune.training.train import finetune

    cfg = dataclass_from_args(FinetuneConfig, args)
    result = finetune(cfg)
    summary = {
        "final_dir": str(result.final_dir),
        "global_step": result.global_step,
        "train_loss": result.train_loss,
        "best_checkpoint": result.best_checkpoint,
        "best_metric": result.best_metric,
        "guard_baseline": result.guard_baseline,
        "guard_ok": result.guard_ok,
    }
    logger.info("result: %s", json.dumps(summary, ensure_ascii=False))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` command to the top-level parser."""
    add_command(
        subparsers,
        "finetune",
        help="fine-tune Whisper with LoRA, AdaLoRA or full fine-tuning",
        description=__doc__,
        options=(FinetuneConfig,),
        func=_run,
    )
