"""The configuration reference: every subcommand's flags and ``--config`` keys, as Markdown.

Rendered from the real argument parser, which :mod:`whisper_finetune.cli._args` builds
from the typed config dataclasses, so the page cannot drift from the code: a test
compares ``docs/configuration.md`` with :func:`render`, and

    python -m whisper_finetune.cli.reference docs/configuration.md

rewrites it after a flag changes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

_HEADER = """# Configuration reference

Every subcommand's flags, generated from the typed config dataclasses that define them
(`python -m whisper_finetune.cli.reference docs/configuration.md`; a test fails when this
page and the code differ). Each flag is also a key of `--config FILE` (YAML or JSON, keys
named like the flags without the dashes, nested sections allowed; flags given on the
command line win). Booleans take `--flag`, `--flag=true` or `--flag=false`. A flag
listed with aliases accepts each spelling; the aliases are the original scripts' names.
"""


def _subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Yield ``(("prepare", "aishell"), parser)`` for every leaf and inner subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from _subcommands(child, (*path, name))


def _portable(text: str) -> str:
    """Defaults that are paths inside the installed package, written machine-independently."""
    import whisper_finetune

    return str(text).replace(
        str(Path(whisper_finetune.__file__).resolve().parent), "whisper_finetune"
    )


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "(switch)"
    if action.choices:
        return " \\| ".join(f"`{c}`" for c in action.choices)
    if action.metavar == "BOOL":
        return "true \\| false"
    kind = getattr(action.type, "__name__", "") or "text"
    kind = {"str": "text", "_none_or": "text", "parse": "text", "value": "text"}.get(kind, kind)
    if action.nargs in ("+", "*"):
        kind = f"{kind} ..."
    return kind


def _flags_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if action.dest == "help" or isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings:  # a positional argument
            name = action.metavar or action.dest.upper()
            help_text = _cell(_portable(action.help or ""))
            rows.append(
                f"| `{name}` (positional) | `{action.dest}` | {_value(action)} | {help_text} |"
            )
            continue
        main, *aliases = action.option_strings
        names = f"`{main}`" + (" (" + ", ".join(f"`{a}`" for a in aliases) + ")" if aliases else "")
        key = "-" if action.dest == "config" else f"`{action.dest}`"
        help_text = _cell(_portable(action.help or ""))
        rows.append(f"| {names} | {key} | {_value(action)} | {help_text} |")
    if not rows:
        return []
    return ["| flag | `--config` key | value | what it does |", "|---|---|---|---|", *rows]


def _summary(parser: argparse.ArgumentParser) -> str:
    text = (parser.description or "").strip().split("\n\n")[0]
    return " ".join(text.split())


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole reference page for ``parser`` (by default the real command line)."""
    if parser is None:
        from whisper_finetune.cli import build_parser

        parser = build_parser()
    out = [_HEADER]
    for path, sub in _subcommands(parser):
        level = "#" * (1 + len(path))
        out.append(f"{level} {' '.join(path)}\n")
        summary = _summary(sub)
        if summary:
            out.append(summary + "\n")
        table = _flags_table(sub)
        if table:
            out.append("\n".join(table) + "\n")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if not argv:
        sys.stdout.write(text)
        return 0
    Path(argv[0]).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
