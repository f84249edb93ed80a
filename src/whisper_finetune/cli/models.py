"""``whisper-finetune models``: the models this machine has, and CTranslate2 import.

Sub-commands:

* ``list``: the embedded models and where their assembled copies are cached;
* ``path NAME [--backend=ct2]``: the local folder a model name resolves to (assembling
  or converting it on first use);
* ``import-ct2 SRC DST [--overwrite]``: turn a CTranslate2 (faster-whisper) Whisper
  folder into a transformers folder that fine-tuning can start from.

Examples::

    whisper-finetune models list
    whisper-finetune models path embedded:whisper-base --backend=ct2
    whisper-finetune models import-ct2 faster-whisper-small/ models/whisper-small
"""

from __future__ import annotations

import argparse

from whisper_finetune.models.store import BACKENDS


def _run_list(args: argparse.Namespace) -> int:
    from whisper_finetune.models.store import (
        EMBEDDED_MODELS,
        EMBEDDED_PREFIX,
        cache_home,
        is_ct2_dir,
        is_transformers_dir,
    )

    print(f"cache: {cache_home()}")
    for name in EMBEDDED_MODELS:
        folder = cache_home() / "embedded" / name
        ct2 = folder / "ct2"
        hf = folder / "transformers"
        print(f"{EMBEDDED_PREFIX}{name}")
        print(f"  ct2:          {ct2 if is_ct2_dir(ct2) else '(assembled on first use)'}")
        print(f"  transformers: {hf if is_transformers_dir(hf) else '(rebuilt on first use)'}")
    return 0


def _run_path(args: argparse.Namespace) -> int:
    from whisper_finetune.models.resolve import resolve_model

    print(resolve_model(args.name, args.backend))
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from whisper_finetune.models.ct2format import ct2_to_transformers
    from whisper_finetune.staging import output_lock

    try:
        with output_lock(args.dst, "DST"):  # one writer per folder (issue 27.4)
            out = ct2_to_transformers(args.src, args.dst, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise ValueError(f"{exc}; pass --overwrite") from exc
    print(out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command and its sub-commands to the top-level parser."""
    parser = subparsers.add_parser(
        "models",
        help="list models, resolve a model name, import a CTranslate2 model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")

    p = sub.add_parser("list", help="the embedded models and their cached copies")
    p.set_defaults(func=_run_list)

    p = sub.add_parser("path", help="the local folder a model name resolves to")
    p.add_argument("name", help="embedded:whisper-base, a folder, or a hub id")
    p.add_argument("--backend", default="transformers", choices=BACKENDS)
    p.set_defaults(func=_run_path)

    p = sub.add_parser(
        "import-ct2",
        help="CTranslate2 (faster-whisper) Whisper folder -> transformers folder",
        description="Rebuild a transformers WhisperForConditionalGeneration folder from a "
        "CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json).",
    )
    p.add_argument("src", metavar="SRC", help="the CTranslate2 folder")
    p.add_argument("dst", metavar="DST", help="the transformers folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")
    p.set_defaults(func=_run_import)
