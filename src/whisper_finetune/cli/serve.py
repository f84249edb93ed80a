"""``whisper-finetune serve``: an OpenAI-compatible HTTP API and a web page over one loaded model."""

from __future__ import annotations

import argparse

from whisper_finetune.cli._args import add_dataclass_args, dataclass_from_args


def register(subparsers) -> None:
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.serving.server import ServeConfig

    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP: OpenAI's audio API and a web page",
        description="Check the port, load a model once and serve it: GET / (a web page), "
        "POST /v1/audio/transcriptions and /v1/audio/translations (OpenAI's API), "
        "GET /v1/models, POST /v1/transcribe, POST /recognition and GET /health.",
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
