"""``whisper-finetune serve``: an HTTP API over one loaded model (the original infer_server.py)."""

from __future__ import annotations

import argparse

from whisper_finetune.cli._args import add_dataclass_args, dataclass_from_args


def register(subparsers) -> None:
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.serving.server import ServeConfig

    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP (POST /v1/transcribe)",
        description="Load a model once and serve POST /v1/transcribe and GET /health.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataclass_args(parser, ServeConfig)
    add_dataclass_args(parser, DecodeOptions)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.serving.server import ServeConfig, serve

    serve(dataclass_from_args(ServeConfig, args), dataclass_from_args(DecodeOptions, args))
    return 0
