"""What an input is: a regular file (not a folder or a device), a language Whisper knows,
a manifest written as one JSON list; and the error a malformed manifest raises.

Shared by the manifest readers and ``prepare validate`` (issue 27.11, 27.15), so that every
command says the same thing about the same input.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from whisper_finetune.data.lineindex import BOM
from whisper_finetune.text import language_code

__all__ = ["file_problem", "require_file", "whisper_language"]


@functools.cache
def whisper_language(language: str) -> bool:
    """Whether Whisper knows ``language`` (a code, a name, or ``<|zh|>``), as training does."""
    try:
        language_code(language)
    except ValueError:
        return False
    return True


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a file to read (missing, a folder, a device), or None."""
    p = Path(path)
    if p.is_file():
        return None
    if p.is_dir():
        return f"{p} is a folder, not a file"
    if p.exists():
        return f"{p} is not a regular file (a device, a pipe or a socket)"
    return f"{p} not found"


def require_file(path: str | os.PathLike, what: str = "manifest") -> None:
    """Raise, naming ``what``, unless ``path`` is a regular file."""
    problem = file_problem(path)
    if problem is None:
        return
    if problem.endswith("not found"):  # the message the tests and users know
        raise FileNotFoundError(f"{what} not found: {path}")
    raise (IsADirectoryError if Path(path).is_dir() else ValueError)(f"{what} {problem}")


class ManifestError(ValueError):
    """A manifest record is malformed; the message names file, line and field."""


def load_json_list(path: Path, raw: bytes) -> list:
    """The items of a manifest written as one JSON list."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the manifest as UTF-8"
        ) from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except RecursionError:
        raise ManifestError(f"{path}: invalid JSON: nested too deeply") from None
    if not isinstance(items, list):
        raise ManifestError(f"{path}: expected a JSON list or JSON Lines")
    return items


def is_json_list(path: Path) -> bool:
    """Whether the file's first non-blank character (after a BOM) opens a JSON list."""
    with open(path, "rb") as f:
        head = f.read(4096).removeprefix(BOM).lstrip()
        while not head:  # a long run of leading whitespace
            more = f.read(4096)
            if not more:
                return False
            head = more.lstrip()
    return head.startswith(b"[")
