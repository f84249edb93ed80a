"""``whisper-finetune infer``: transcribe one audio file (or many) with any backend.

Replaces the original ``infer.py`` and ``infer_ct2.py``. The result goes to stdout (or
``--output_file``) as JSON ``{"language", "duration", "results": [{"start", "end",
"text"}], "text"}``, plain text, SRT or WebVTT. Logs go to stderr. ``--output_file`` is
checked before the model loads.

``--audio_path`` may also be a manifest (``.json``/``.jsonl``: its slices and languages
are used) or a folder (every audio file under it): the output is then JSON Lines, one
object per audio with its ``audio`` path (or ``audio<TAB>text`` lines with
``--output_format=txt``), in input order. Under ``torchrun --nproc_per_node=N`` the
inputs are shared out by rank and rank 0 writes the whole output.

Examples::

    whisper-finetune infer --audio_path=test.wav
    whisper-finetune infer --audio_path=test.wav --model_path=models/merged --language=zh
    whisper-finetune infer --audio_path=long.mp3 --backend=ct2 --compute_type=int8 \\
        --vad_filter --output_format=srt --output_file=long.srt
    whisper-finetune infer --audio_path=recordings/ --output_file=recordings.jsonl
    torchrun --nproc_per_node=2 -m whisper_finetune infer --audio_path=test.jsonl \\
        --backend=ct2 --compute_type=int8 --output_file=test-transcripts.jsonl
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

from whisper_finetune.cli._args import add_command, dataclass_from_args
from whisper_finetune.inference.base import BACKENDS
from whisper_finetune.inference.transcript import OUTPUT_FORMATS, DecodeOptions

logger = logging.getLogger(__name__)

BACKEND_CHOICES = BACKENDS


@dataclass(frozen=True)
class RuntimeOptions:
    """Which model runs where; shared by ``infer`` and ``evaluate``."""

    model_path: str = field(
        default="embedded:whisper-base",
        metadata={
            "help": "embedded:whisper-base, a transformers folder (e.g. a merged fine-tune) or a "
            "CTranslate2 folder"
        },
    )
    backend: str = field(
        default="transformers",
        metadata={
            "help": "transformers, ct2 (faster-whisper) or whispercpp (whisper.cpp; pip install "
            "whisper-finetune[whispercpp]); a transformers folder is converted once for either",
            "choices": BACKEND_CHOICES,
        },
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cpu or cuda"})
    compute_type: str = field(
        default="default",
        metadata={
            "help": "ct2: default, int8, int8_float16, float16, float32, ...; "
            "transformers: default, float32, float16, bfloat16; "
            "whispercpp: default (f16), q8_0, q5_0, ... (the GGML type to convert to)"
        },
    )
    cpu_threads: int = field(default=0, metadata={"help": "CPU threads; 0 = the library default"})
    num_workers: int = field(
        default=1, metadata={"help": "ct2: parallel workers for concurrent calls"}
    )


@dataclass(frozen=True)
class InferOptions:
    """What to transcribe and how to print it."""

    audio_path: str = field(
        default="",
        metadata={
            "help": "the audio file (wav, mp3, m4a, flac, ...); or a manifest or a folder: "
            "one JSON line per audio"
        },
    )
    batch_size: int = field(
        default=1,
        metadata={
            "help": "ct2: above 1, cut the audio at pauses (VAD) and decode chunks in batches "
            "(faster-whisper BatchedInferencePipeline)"
        },
    )
    to_simple: bool = field(
        default=False, metadata={"help": "convert traditional Chinese to simplified"}
    )
    remove_pun: bool = field(
        default=False, metadata={"help": "remove punctuation (the scoring normalization)"}
    )
    output_format: str = field(
        default="json", metadata={"help": "json, txt, srt or vtt", "choices": OUTPUT_FORMATS}
    )
    output_file: str | None = field(
        default=None, metadata={"help": "write the result to this file instead of stdout"}
    )


def runtime_kwargs(runtime: RuntimeOptions, batch_size: int = 1) -> dict:
    """Keyword arguments for :func:`whisper_finetune.inference.loader.load_transcriber`."""
    return {
        "model": runtime.model_path,
        "backend": runtime.backend,
        "device": runtime.device,
        "compute_type": runtime.compute_type,
        "cpu_threads": runtime.cpu_threads,
        "num_workers": runtime.num_workers,
        "batch_size": batch_size,
    }


def quiet_libraries(args: argparse.Namespace) -> None:
    """Keep faster-whisper's per-file INFO lines out of the output unless debugging."""
    if getattr(args, "log_level", "INFO") != "DEBUG":
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)


def _run(args: argparse.Namespace) -> int:
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import format_transcript

    opts = dataclass_from_args(InferOptions, args)
    runtime = dataclass_from_args(RuntimeOptions, args)
    decode = dataclass_from_args(DecodeOptions, args)
    if not opts.audio_path:
        raise ValueError("--audio_path is required")
    source = Path(opts.audio_path)
    if source.is_dir() or source.suffix.lower() in (".json", ".jsonl"):
        return _run_many(opts, runtime, decode, args)
    if not source.is_file():
        raise FileNotFoundError(f"audio file not found: {opts.audio_path}")
    if opts.output_file:
        from whisper_finetune.staging import check_output_file

        # before the model loads, not after the work
        check_output_file(opts.output_file, sources=(opts.audio_path,))
    quiet_libraries(args)
    transcriber = load_transcriber(**runtime_kwargs(runtime, opts.batch_size))
    transcript = transcriber.transcribe(opts.audio_path, decode)
    transcript = transcript.normalized(opts.remove_pun, opts.to_simple)
    text = format_transcript(transcript, opts.output_format)
    if opts.output_file:
        out = Path(opts.output_file)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        logger.info("wrote %s", out)
    else:
        print(text, end="")
    return 0


def _run_many(opts: InferOptions, runtime: RuntimeOptions, decode, args) -> int:
    from whisper_finetune.evaluation.run import TranscribeJob, run_transcription
    from whisper_finetune.inference.loader import load_transcriber

    if not Path(opts.audio_path).exists():
        raise FileNotFoundError(f"not found: {opts.audio_path}")
    quiet_libraries(args)
    job = TranscribeJob(
        inputs=opts.audio_path,
        decode=decode,
        load=runtime_kwargs(runtime, opts.batch_size),
        output_file=opts.output_file,
        output_format=opts.output_format,
        remove_pun=opts.remove_pun,
        to_simple=opts.to_simple,
    )
    text = run_transcription(job, load_transcriber)
    if text:  # rank 0, without --output_file
        print(text, end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``infer`` command to the top-level parser."""
    add_command(
        subparsers,
        "infer",
        help="transcribe an audio file (transformers or CTranslate2), print JSON/txt/srt/vtt",
        description=__doc__,
        options=(InferOptions, RuntimeOptions, DecodeOptions),
        func=_run,
    )
