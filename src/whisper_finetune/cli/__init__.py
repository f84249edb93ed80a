"""The ``whisper-finetune`` command line: a thin shell over the library.

Each subcommand lives in its own module under ``whisper_finetune.cli`` and exposes
``register(subparsers)``; the handler it sets turns parsed flags into a typed config
object and calls one library function. Heavy imports (torch, transformers) happen inside
the handlers so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from whisper_finetune.cli._args import add_config_option, apply_config
from whisper_finetune.version import __version__

# subcommand modules, in the order they appear in --help
_COMMANDS = (
    "prepare",
    "finetune",
    "merge",
    "alignment_heads",
    "evaluate",
    "infer",
    "convert",
    "models",
    "serve",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whisper-finetune",
        description="Fine-tune, evaluate, accelerate and serve OpenAI Whisper.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"whisper_finetune.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not written yet
            if exc.name != f"whisper_finetune.cli.{name}":
                raise
            continue
        module.register(sub)
    _add_config_options(parser)
    return parser


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand (nested ones too) ``--config FILE``, and no abbreviated flags:
    ``--output`` for ``--output_dir`` would not count as given on the command line, so a
    config file's value would silently win over it (issue 27.14)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.allow_abbrev = False
                add_config_option(child)
                _add_config_options(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        apply_config(args, argv)
        return int(args.func(args) or 0)
    except (OSError, ValueError, RuntimeError) as exc:
        if args.log_level == "DEBUG":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the commands keep what they finished; no traceback
        if args.log_level == "DEBUG":
            raise
        print(
            f"interrupted (Ctrl-C): {args.command} stopped; what it had finished is kept",
            file=sys.stderr,
        )
        return 130
