"""What an input is: a regular file (not a folder or a device), a language Whisper knows.

Shared by the manifest readers and ``prepare validate`` (issue 27.11, 27.15), so that every
command says the same thing about the same input.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

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
