"""``whisper-finetune demo``: the whole road on the embedded defaults (see whisper_finetune.demo.demo)."""

from __future__ import annotations

import argparse

from whisper_finetune.cli._args import add_dataclass_args, dataclass_from_args


def register(subparsers) -> None:
    from whisper_finetune.demo.demo import DemoConfig

    parser = subparsers.add_parser(
        "demo",
        help="end to end: corpus, baseline, LoRA fine-tune, merge, CTranslate2, report",
        description=(
            "Build the synthetic Mandarin corpus, measure whisper-base with both backends, "
            "LoRA fine-tune on CPU, merge under a real-speech guard, convert to CTranslate2 "
            "int8, measure again and write a report. --train_data/--test_data/--base_model "
            "run the same road on your data."
        ),
    )
    add_dataclass_args(parser, DemoConfig)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from whisper_finetune.demo.demo import DemoConfig, run_demo

    run_demo(dataclass_from_args(DemoConfig, args))
    return 0
