"""``whisper-finetune alignment-heads``: choose the cross-attention heads word timestamps use.

Scores every decoder cross-attention head of a transformers Whisper folder against a
manifest whose records have timed ``sentences`` (packed windows of ``prepare pack``, the
built-in corpus, a prepared long recording), and writes the best set into the model's
``generation_config.json`` when it times sentence ends better, on held-out
records, than the model's current set. ``--converted`` updates CTranslate2 (``config.json``)
and GGML (``whisper_finetune.json``) folders of the same model too.

Examples::

    whisper-finetune prepare pack --manifest=data/test.jsonl --output=data/test-packed.jsonl
    whisper-finetune alignment-heads --model_path=models/base-zh --data=data/test-packed.jsonl
    whisper-finetune alignment-heads --model_path=models/base-zh \\
        --data=data/test-packed.jsonl --converted models/base-zh-ct2 models/base-zh-ggml
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

from whisper_finetune.cli._args import add_command, dataclass_from_args


@dataclass(frozen=True)
class AlignmentHeadsOptions:
    """Options of ``whisper-finetune alignment-heads``."""

    model_path: str = field(
        default="", metadata={"help": "transformers Whisper folder (changed in place)"}
    )
    data: str = field(default="", metadata={"help": "manifest with timed 'sentences'"})
    language: str | None = field(
        default=None, metadata={"help": "forced language (default: the model's, else zh)"}
    )
    num_heads: int | None = field(
        default=None, metadata={"help": "heads to keep (default: as many as the model lists)"}
    )
    max_records: int = field(
        default=16, metadata={"help": "timed records used: half choose, half check"}
    )
    converted: tuple[str, ...] = field(
        default=(), metadata={"help": "CTranslate2 or GGML folders of this model to update"}
    )
    force: bool = field(
        default=False, metadata={"help": "write the chosen heads even if they do no better"}
    )


def _run(args: argparse.Namespace) -> int:
    from whisper_finetune.evaluation.heads import update_alignment_heads

    opts = dataclass_from_args(AlignmentHeadsOptions, args)
    if not opts.model_path or not opts.data:
        raise ValueError("--model_path and --data are required")
    choice = update_alignment_heads(
        opts.model_path,
        opts.data,
        language=opts.language,
        num_heads=opts.num_heads,
        max_records=opts.max_records,
        converted=tuple(opts.converted),
        force=opts.force,
    )
    print(json.dumps(choice.to_json() | {"written": choice.better or opts.force}, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``alignment-heads`` command to the top-level parser."""
    add_command(
        subparsers,
        "alignment-heads",
        help="choose the cross-attention heads word timestamps use, from timed sentences",
        description=__doc__,
        options=(AlignmentHeadsOptions,),
        func=_run,
    )
