"""``whisper-finetune merge``: merge a LoRA/AdaLoRA adapter into its base model.

Replaces the original ``merge_lora.py``. The base model is read from the adapter's
``adapter_config.json``; the output is a standalone transformers folder (weights,
tokenizer, ``preprocessor_config.json``, generation config) that ``convert``,
``evaluate`` and ``infer`` take directly.

Examples::

    whisper-finetune merge --lora_model=output/base-lora/final --output_dir=models/base-zh
    whisper-finetune merge --lora_model=output/base-lora/checkpoint-2000 \\
        --output_dir=models/base-zh-half --scale=0.5 --overwrite
    whisper-finetune merge --lora_model=output/base-lora/final --output_dir=models/base-zh-dec08 \\
        --decoder_scale=0.8
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from whisper_finetune.cli._args import add_command, dataclass_from_args


@dataclass(frozen=True)
class MergeOptions:
    """Options of ``whisper-finetune merge``."""

    lora_model: str = field(
        default="", metadata={"help": "adapter folder (a run's final/ or checkpoint-N/)"}
    )
    output_dir: str = field(default="", metadata={"help": "where to write the merged model"})
    scale: float = field(
        default=1.0, metadata={"help": "adapter weight in [0, 1]: W = W_base + scale * delta"}
    )
    decoder_scale: float | None = field(
        default=None,
        metadata={"help": "weight in [0, 1] of the decoder's adapters (default: --scale)"},
    )
    overwrite: bool = field(default=False, metadata={"help": "replace a non-empty output_dir"})
    language: str | None = field(
        default=None,
        metadata={"help": "language for generation_config.json (default: the run's config)"},
    )
    task: str | None = field(
        default=None,
        metadata={
            "help": "task for generation_config.json (default: the run's config)",
            "choices": ("transcribe", "translate"),
        },
    )
    alignment_data: str | None = field(
        default=None,
        metadata={
            "help": "manifest with timed sentences to choose alignment heads on (default: "
            "the run's test/train manifest when timed)"
        },
    )
    alignment_heads: bool = field(
        default=True,
        metadata={"help": "choose word-timestamp alignment heads at the end (false: skip)"},
    )


def _run(args: argparse.Namespace) -> int:
    from whisper_finetune.training.merge import merge_adapter

    opts = dataclass_from_args(MergeOptions, args)
    if not opts.lora_model or not opts.output_dir:
        raise ValueError("--lora_model and --output_dir are required")
    out = merge_adapter(
        opts.lora_model,
        opts.output_dir,
        scale=opts.scale,
        overwrite=opts.overwrite,
        decoder_scale=opts.decoder_scale,
        language=opts.language,
        task=opts.task,
        alignment_data=opts.alignment_data,
        alignment_heads=opts.alignment_heads,
    )
    print(f"merged: {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``merge`` command to the top-level parser."""
    add_command(
        subparsers,
        "merge",
        help="merge a LoRA/AdaLoRA adapter into its base model (standalone folder)",
        description=__doc__,
        options=(MergeOptions,),
        func=_run,
    )
