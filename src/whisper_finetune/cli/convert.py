"""``whisper-finetune convert``: a transformers Whisper folder to CTranslate2 or whisper.cpp.

``--format=ct2`` (the default) writes a CTranslate2 folder for faster-whisper, with
``tokenizer.json`` and ``preprocessor_config.json``. ``--format=ggml`` writes a whisper.cpp
model file (``ggml-model.bin`` for f16, ``ggml-model-q8_0.bin`` ...) with the mel filters
and the vocabulary whisper.cpp expects; quantized types need
``pip install whisper-finetune[whispercpp]``.

With ``--sample=AUDIO`` the source and the converted model both transcribe it greedily
and the two texts are printed with the CER between them: the check that a conversion
kept the model's behaviour. For the exact types (ct2 ``float32``/``float16``, ggml
``f32``/``f16``) a different text fails the command (exit status 1); for quantized types
the CER difference is reported.

Examples::

    whisper-finetune convert --model_path=models/merged --output_dir=models/merged-ct2
    whisper-finetune convert --model_path=models/merged --output_dir=models/ct2-int8 \\
        --quantization=int8 --sample=dataset/test.wav --force
    whisper-finetune convert --format=ggml --model_path=models/merged \\
        --output_dir=models/merged-ggml --quantization=q8_0 --sample=dataset/test.wav
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

from whisper_finetune.cli._args import add_command, dataclass_from_args
from whisper_finetune.models.convert import QUANTIZATIONS
from whisper_finetune.models.ggml import GGML_QUANTIZATIONS

FORMATS = ("ct2", "ggml")
DEFAULT_QUANTIZATION = {"ct2": "float16", "ggml": "f16"}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertOptions:
    """Options of ``whisper-finetune convert``."""

    format: str = field(
        default="ct2",
        metadata={
            "help": "ct2 (CTranslate2 folder for faster-whisper) or ggml (whisper.cpp model file)",
            "choices": FORMATS,
        },
    )
    model_path: str = field(
        default="",
        metadata={
            "help": "transformers Whisper folder (e.g. a merged fine-tune) or embedded:whisper-base"
        },
    )
    output_dir: str = field(default="", metadata={"help": "where to write the converted model"})
    quantization: str | None = field(
        default=None,
        metadata={
            "help": "weight type. ct2: float16 (default; GPU), int8 (fastest on CPU), float32 "
            "(exact), ...; ggml: f16 (default), f32, q8_0, q5_0, q5_1, q4_0",
            "choices": QUANTIZATIONS + GGML_QUANTIZATIONS,
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
    from whisper_finetune.evaluation.parity import EXACT_TYPES, compare_conversion
    from whisper_finetune.inference.transcript import DecodeOptions

    opts = dataclass_from_args(ConvertOptions, args)
    if not opts.model_path or not opts.output_dir:
        raise ValueError("--model_path and --output_dir are required")
    quantization = opts.quantization or DEFAULT_QUANTIZATION[opts.format]
    allowed = QUANTIZATIONS if opts.format == "ct2" else GGML_QUANTIZATIONS
    if quantization not in allowed:
        raise ValueError(f"--format={opts.format} takes --quantization in {allowed}")
    from whisper_finetune.staging import output_lock

    try:
        with output_lock(opts.output_dir):  # one writer per folder (issue 27.4)
            out = _convert(opts.format, opts.model_path, opts.output_dir, quantization, opts.force)
    except FileExistsError as exc:  # not a FileNotFoundError: report it the same way
        raise ValueError(str(exc)) from exc
    print(f"converted: {out} ({quantization})")
    if not opts.sample:
        logger.info("no --sample given: skipped comparing the two models' transcripts")
        return 0
    backend = "ct2" if opts.format == "ct2" else "whispercpp"
    options = DecodeOptions.plain(language=opts.language)
    check = compare_conversion(opts.model_path, out, opts.sample, options, opts.device, backend)
    verdict = "identical" if check.identical else "DIFFERENT"
    print(f"sample:       {check.sample}")
    print(f"transformers: {check.transformers_text}")
    print(f"{opts.format + ':':<13} {check.converted_text}")
    print(f"CER {opts.format} vs transformers: {check.cer:.4f} ({verdict})")
    if quantization in EXACT_TYPES and not check.identical:
        raise RuntimeError(
            f"the {quantization} conversion does not give the source's greedy text on "
            f"{opts.sample} (CER {check.cer:.4f}); the converted model is at {out}"
        )
    if not check.identical and not opts.accept_difference:
        logger.error(
            "the converted model transcribes %s differently from its source; pass "
            "--accept_difference when that is expected (e.g. int8 quantization)",
            check.sample,
        )
        return 1
    return 0


def _convert(fmt: str, model_path: str, output_dir: str, quantization: str, force: bool):
    if fmt == "ggml":
        from whisper_finetune.models.ggml import convert_to_ggml

        return convert_to_ggml(model_path, output_dir, quantization=quantization, force=force)
    from whisper_finetune.models.convert import convert_to_ct2

    return convert_to_ct2(model_path, output_dir, quantization=quantization, force=force)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` command to the top-level parser."""
    add_command(
        subparsers,
        "convert",
        help="convert a transformers Whisper folder to CTranslate2 (faster-whisper) or GGML (whisper.cpp)",
        description=__doc__,
        options=(ConvertOptions,),
        func=_run,
    )
