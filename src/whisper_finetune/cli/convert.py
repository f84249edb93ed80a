"""``whisper-finetune convert``: a transformers Whisper folder to CTranslate2 (faster-whisper).

The output holds ``tokenizer.json`` and ``preprocessor_config.json`` as faster-whisper
needs. With ``--sample=AUDIO`` the source and the converted model both transcribe it and
the two texts are printed with the CER between them: the check that a conversion (and
its quantization) kept the model's behaviour.

Examples::

    whisper-finetune convert --model_path=models/merged --output_dir=models/merged-ct2
    whisper-finetune convert --model_path=models/merged --output_dir=models/ct2-int8 \\
        --quantization=int8 --sample=dataset/test.wav --force
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

from whisper_finetune.cli._args import add_dataclass_args, dataclass_from_args
from whisper_finetune.models.convert import QUANTIZATIONS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertOptions:
    """Options of ``whisper-finetune convert``."""

    model_path: str = field(
        default="",
        metadata={
            "help": "transformers Whisper folder (e.g. a merged fine-tune) or embedded:whisper-base"
        },
    )
    output_dir: str = field(default="", metadata={"help": "where to write the CTranslate2 model"})
    quantization: str = field(
        default="float16",
        metadata={
            "help": "weight type: float16 (GPU), int8 (fastest on CPU), float32 (exact), ...",
            "choices": QUANTIZATIONS,
        },
    )
    force: bool = field(default=False, metadata={"help": "replace a non-empty output_dir"})
    sample: str | None = field(
        default=None,
        metadata={"help": "audio file to transcribe with both models and compare; none = skip"},
    )
    language: str | None = field(
        default=None, metadata={"help": "language for the sample comparison; none = detect"}
    )
    device: str = field(default="auto", metadata={"help": "device for the sample comparison"})
    accept_difference: bool = field(
        default=False,
        metadata={
            "help": "exit 0 even when the --sample transcripts differ (a known difference, "
            "e.g. after int8 quantization); otherwise a difference fails the command"
        },
    )


def _run(args: argparse.Namespace) -> int:
    from whisper_finetune.evaluation.parity import compare_conversion
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.models.convert import convert_to_ct2

    opts = dataclass_from_args(ConvertOptions, args)
    if not opts.model_path or not opts.output_dir:
        raise ValueError("--model_path and --output_dir are required")
    try:
        out = convert_to_ct2(
            opts.model_path, opts.output_dir, quantization=opts.quantization, force=opts.force
        )
    except FileExistsError as exc:  # not a FileNotFoundError: report it the same way
        raise ValueError(str(exc)) from exc
    print(f"converted: {out} ({opts.quantization})")
    if not opts.sample:
        logger.info("no --sample given: skipped comparing the two models' transcripts")
        return 0
    check = compare_conversion(
        opts.model_path,
        out,
        opts.sample,
        DecodeOptions.plain(language=opts.language),
        device=opts.device,
    )
    verdict = "identical" if check.identical else "DIFFERENT"
    print(f"sample:       {check.sample}")
    print(f"transformers: {check.transformers_text}")
    print(f"ct2:          {check.ct2_text}")
    print(f"CER ct2 vs transformers: {check.cer:.4f} ({verdict})")
    if not check.identical and not opts.accept_difference:
        logger.error(
            "the converted model transcribes %s differently from its source; pass "
            "--accept_difference when that is expected (e.g. int8 quantization)",
            check.sample,
        )
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` command to the top-level parser."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a transformers Whisper folder to CTranslate2 for faster-whisper",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataclass_args(parser, ConvertOptions)
    parser.set_defaults(func=_run)
