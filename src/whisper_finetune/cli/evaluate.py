"""``whisper-finetune evaluate``: corpus CER/WER of a model on a manifest.

Replaces the original ``evaluation.py``. Punctuation removal and traditional-to-simplified
conversion are on by default (``--remove_pun=false`` / ``--to_simple=false`` turn them
off). The summary is printed as JSON; with ``--output_dir`` it is also written to
``summary.json`` next to ``utterances.jsonl`` (one line per utterance: audio,
reference, hypothesis, both normalized, errors, reference units).

Examples::

    whisper-finetune evaluate --test_data=dataset/test.json --metric=cer
    whisper-finetune evaluate --model_path=models/merged --test_data=dataset/test.json \\
        --backend=ct2 --compute_type=int8 --batch_size=8 --output_dir=eval/ct2-int8
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field

from whisper_finetune.cli._args import add_dataclass_args, dataclass_from_args
from whisper_finetune.cli.infer import RuntimeOptions, quiet_libraries, runtime_kwargs
from whisper_finetune.inference.transcript import DecodeOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateOptions:
    """What to evaluate on and how to score."""

    test_data: str = field(
        default="", metadata={"help": "the test manifest (JSON list or JSON Lines)"}
    )
    metric: str = field(default="cer", metadata={"help": "cer or wer", "choices": ("cer", "wer")})
    language: str | None = field(
        default="zh",
        metadata={
            "help": "language code (a record's own language wins); none = detect per utterance"
        },
    )
    batch_size: int = field(default=8, metadata={"help": "utterances decoded per batch"})
    remove_pun: bool = field(default=True, metadata={"help": "remove punctuation before scoring"})
    to_simple: bool = field(
        default=True, metadata={"help": "convert traditional Chinese to simplified before scoring"}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "write summary.json and utterances.jsonl here"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar on stderr"})


def _run(args: argparse.Namespace) -> int:
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.evaluation.evaluate import EvalConfig, evaluate, write_report
    from whisper_finetune.inference.loader import load_transcriber

    opts = dataclass_from_args(EvaluateOptions, args)
    runtime = dataclass_from_args(RuntimeOptions, args)
    if not opts.test_data:
        raise ValueError("--test_data is required")
    config = EvalConfig(
        metric=opts.metric,
        batch_size=opts.batch_size,
        remove_punctuation=opts.remove_pun,
        to_simplified=opts.to_simple,
        decode=dataclass_from_args(DecodeOptions, args, language=opts.language),
        progress=opts.progress,
    )
    records = read_manifest(opts.test_data)
    logger.info("%d utterances in %s", len(records), opts.test_data)
    quiet_libraries(args)
    transcriber = load_transcriber(**runtime_kwargs(runtime, opts.batch_size))
    report = evaluate(transcriber, records, config)
    meta = {"model": runtime.model_path, "backend": runtime.backend, "test_data": opts.test_data}
    if runtime.backend == "ct2" or runtime.compute_type != "default":
        meta["compute_type"] = runtime.compute_type
    if opts.output_dir:
        summary, utterances = write_report(report, opts.output_dir, **meta)
        logger.info("wrote %s and %s", summary, utterances)
    print(json.dumps(report.summary(**meta), ensure_ascii=False, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command to the top-level parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="corpus CER/WER of a model on a manifest, with a per-utterance report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataclass_args(parser, EvaluateOptions)
    add_dataclass_args(parser, RuntimeOptions)
    add_dataclass_args(parser, DecodeOptions, exclude=("language",))
    parser.set_defaults(func=_run)
