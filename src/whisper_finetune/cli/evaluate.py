"""``whisper-finetune evaluate``: corpus CER/WER of a model on a manifest.

Replaces the original ``evaluation.py``. Punctuation removal and traditional-to-simplified
conversion are on by default (``--remove_pun=false`` / ``--to_simple=false`` turn them
off), and so, for records in Chinese, is numeral normalisation (``--normalize_numbers``:
``40`` and ``四十`` score the same; ``=false`` turns it off, ``=true`` forces it on). The summary is printed as JSON; with ``--output_dir`` it is also written to
``summary.json`` next to ``utterances.jsonl`` (one line per utterance: audio,
reference, hypothesis, both normalized, errors, reference units).

Every record's audio is checked first (exists, header decodes, slice inside the file,
as ``prepare validate`` checks it), before the model loads; the command stops with the
whole list unless ``--skip_bad_samples`` scores the rest and lists the skipped records
in the summary. ``--output_dir`` is checked before any work too. Per-utterance results
are written as they are produced, so a late failure keeps them and says where.

Under ``torchrun --nproc_per_node=N`` (``--nnodes`` for several machines) the records
are shared out by rank and rank 0 writes one report, equal to a single process's.

Examples::

    whisper-finetune evaluate --test_data=dataset/test.json --metric=cer
    whisper-finetune evaluate --model_path=models/merged --test_data=dataset/test.json \\
        --backend=ct2 --compute_type=int8 --batch_size=8 --output_dir=eval/ct2-int8
    torchrun --nproc_per_node=4 -m whisper_finetune evaluate --test_data=test.jsonl \\
        --output_dir=eval/4gpu
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

from whisper_finetune.cli._args import add_command, dataclass_from_args
from whisper_finetune.cli.infer import RuntimeOptions, quiet_libraries, runtime_kwargs
from whisper_finetune.inference.transcript import DecodeOptions


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
    normalize_numbers: bool | None = field(
        default=None,
        metadata={
            "help": "write Arabic numerals as Chinese ones on both sides before scoring (cn2an), "
            "so 40 and 四十 are the same; unset: on for records in Chinese (zh), off otherwise"
        },
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "write summary.json and utterances.jsonl here"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar on stderr"})
    skip_bad_samples: bool = field(
        default=False,
        metadata={
            "help": "score the records whose audio passes the checks and list the others in "
            "the summary, instead of stopping"
        },
    )


def _run(args: argparse.Namespace) -> int:
    from whisper_finetune.evaluation.evaluate import EvalConfig
    from whisper_finetune.evaluation.run import EvalJob, run_evaluation
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
        normalize_numbers=opts.normalize_numbers,
        decode=dataclass_from_args(DecodeOptions, args, language=opts.language),
        progress=opts.progress,
    )
    meta = {"model": runtime.model_path, "backend": runtime.backend, "test_data": opts.test_data}
    meta["normalize_numbers"] = (
        "auto (zh)" if opts.normalize_numbers is None else opts.normalize_numbers
    )
    if runtime.backend == "ct2" or runtime.compute_type != "default":
        meta["compute_type"] = runtime.compute_type
    quiet_libraries(args)
    job = EvalJob(
        test_data=opts.test_data,
        config=config,
        load=runtime_kwargs(runtime, opts.batch_size),
        output_dir=opts.output_dir,
        skip_bad_samples=opts.skip_bad_samples,
        meta=meta,
    )
    result = run_evaluation(job, load_transcriber)
    if result is not None:  # rank 0
        report, extra = result
        print(json.dumps(report.summary(**extra), ensure_ascii=False, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command to the top-level parser."""
    add_command(
        subparsers,
        "evaluate",
        help="corpus CER/WER of a model on a manifest, with a per-utterance report",
        description=__doc__,
        options=(EvaluateOptions, RuntimeOptions, DecodeOptions),
        exclude={DecodeOptions: ("language",)},
        func=_run,
    )
