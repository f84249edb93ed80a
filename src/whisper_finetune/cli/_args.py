"""Turn a config dataclass into argparse flags, so each option is written once.

A field's help text comes from ``field(metadata={"help": ...})``; extra flag spellings
(the original scripts' names) from ``metadata={"aliases": [...]}``. Booleans are strict:
``--flag``, ``--flag=true`` and ``--flag=false`` work; ``--flag=maybe`` is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def str2bool(value: str) -> bool:
    """Parse a boolean flag value strictly."""
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _none_or(kind):
    def parse(value: str):
        if str(value).strip().lower() in {"none", "null", ""}:
            return None
        return kind(value)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _unwrap(tp) -> tuple[Any, bool]:
    """Return (inner type, optional?) for ``X | None`` / ``Optional[X]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_dataclass_args(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    exclude: tuple[str, ...] = (),
    prefix: str = "",
) -> None:
    """Add one ``--name`` flag per field of dataclass ``cls``.

    Flags default to ``argparse.SUPPRESS`` so that :func:`dataclass_from_args` only
    overrides the fields the user gave, and the dataclass keeps the single source of
    defaults.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        tp, optional = _unwrap(hints[f.name])
        names = [f"--{prefix}{f.name}", *(f"--{a}" for a in f.metadata.get("aliases", ()))]
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
        kwargs: dict[str, Any] = {"dest": prefix + f.name, "default": argparse.SUPPRESS}
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            kwargs["required"] = True
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs.update(type=str2bool, nargs="?", const=True, metavar="BOOL")
        elif origin in (list, tuple):
            inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
            kwargs.update(type=inner, nargs="*" if optional else "+")
        elif tp in (int, float, str):
            kwargs["type"] = _none_or(tp) if optional else tp
        else:
            kwargs["type"] = _none_or(str) if optional else str
        parser.add_argument(*names, help=help_text, **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "", **extra) -> T:
    """Build ``cls`` from the flags the user gave (others keep the dataclass defaults)."""
    values = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if hasattr(args, key):
            value = getattr(args, key)
            values[f.name] = tuple(value) if isinstance(value, list) else value
    values.update(extra)
    return cls(**values)
