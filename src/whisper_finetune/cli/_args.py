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
    parse.accepts_none = True  # a config file's null is this option's None
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
            # required, but it may come from --config: checked in dataclass_from_args
            help_text = f"{f.metadata.get('help', '')} (required)"
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        origin = typing.get_origin(tp)
        if tp is bool:
            kind = _none_or(str2bool) if optional else str2bool
            kwargs.update(type=kind, nargs="?", const=True, metavar="BOOL")
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
    missing = [
        f"--{prefix}{f.name}"
        for f in dataclasses.fields(cls)
        if f.init
        and f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ValueError(f"missing required option(s): {', '.join(missing)} (flag or --config key)")
    return cls(**values)


# ---------------------------------------------------------------- config files

# top-level sections of a config file that describe a run and set no option
# (``finetune_config.json`` keeps the resolved model path, world size and version there)
METADATA_SECTIONS = ("provenance",)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a ``--config FILE`` option (YAML or JSON; flags override it)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="YAML or JSON file of options, keys named like the flags (nested sections "
        "allowed); flags given on the command line override it",
    )
    parser.set_defaults(_leaf_parser=parser)


def packaged_config(path: str):
    """``path`` itself, or the example config of that name shipped in the package.

    ``--config lora-24gb-gpu.yaml`` finds ``whisper_finetune/configs/lora-24gb-gpu.yaml``
    when no such file exists where the user stands (a file that does exist wins).
    """
    from pathlib import Path

    p = Path(path).expanduser()
    if p.exists() or p.parent != Path("."):
        return p
    shipped = Path(__file__).resolve().parents[1] / "configs" / p.name
    return shipped if shipped.is_file() else p


def read_config_file(path: str) -> dict[str, Any]:
    """Read a YAML or JSON config file into one flat ``{flag name: value}`` mapping.

    A value that is a mapping is a section: its keys join the top level (``training:
    {learning_rate: 1e-3}`` sets ``learning_rate``). Sections in :data:`METADATA_SECTIONS`
    are skipped.

    Raises:
        ValueError: unreadable file, not a mapping, or one key given twice.
    """
    import json

    import yaml

    p = packaged_config(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--config {path}: cannot read it: {exc}") from exc
    try:
        data = (
            json.loads(text, object_pairs_hook=_unique_json_keys(path))
            if p.suffix.lower() == ".json"
            else yaml.load(text, Loader=_unique_keys_loader(path))  # noqa: S506 (a SafeLoader)
        )
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(
            f"--config {path}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of option names to values")
    flat: dict[str, Any] = {}

    def take(mapping: dict, where: str) -> None:
        for key, value in mapping.items():
            key = str(key).replace("-", "_")
            if where == "" and key in METADATA_SECTIONS:
                continue
            if isinstance(value, dict):
                take(value, f"{where}{key}.")
                continue
            if key in flat:
                raise ValueError(
                    f"--config {path}: option {key!r} is given twice (at {where}{key})"
                )
            flat[key] = value

    take(data, "")
    return flat


def _unique_json_keys(path: str):
    def pairs(items: list) -> dict:
        seen: dict = {}
        for key, value in items:
            if key in seen:
                raise ValueError(f"--config {path}: key {key!r} is given twice in one object")
            seen[key] = value
        return seen

    return pairs


def _unique_keys_loader(path: str):
    """A YAML SafeLoader that refuses a key given twice in one mapping (YAML lets the last
    one win silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise ValueError(
                        f"--config {path}: key {key!r} is given twice in one mapping "
                        f"(line {key_node.start_mark.line + 1})"
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _given_on_command_line(action: argparse.Action, argv: list[str]) -> bool:
    return any(
        token == opt or token.startswith(opt + "=")
        for opt in action.option_strings
        for token in argv
    )


def _convert(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    """Check a config value as argparse would check the flag's text."""

    if value is None:  # YAML null / JSON null
        if getattr(action.type, "accepts_none", False) or action.nargs == "*":
            return None
        raise ValueError(
            f"--config {path}: {key}: null is not a value this option takes (leave the key "
            "out to keep its default)"
        )

    def one(v: Any) -> Any:
        if v is None or isinstance(v, bool) or not callable(action.type):
            return v
        try:
            return action.type(str(v)) if isinstance(v, str) else action.type(str(v))
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise ValueError(f"--config {path}: {key}: {exc}") from exc

    if action.nargs in ("+", "*"):
        items = value if isinstance(value, (list, tuple)) else [value]
        value = [one(v) for v in items]
        bad = [v for v in value if action.choices and v not in action.choices]
    else:
        if isinstance(value, (list, tuple)):
            raise ValueError(f"--config {path}: {key} takes one value, got a list")
        if (
            isinstance(value, bool)
            and action.type is not None
            and getattr(action.type, "__name__", "") != "str2bool"
        ):
            raise ValueError(f"--config {path}: {key} is not a true/false option")
        value = one(value)
        bad = [value] if action.choices and value not in action.choices else []
    if bad:
        raise ValueError(f"--config {path}: {key}={bad[0]!r} is not one of {list(action.choices)}")
    return value


def apply_config(args: argparse.Namespace, argv: list[str]) -> argparse.Namespace:
    """Fill ``args`` from ``--config`` for every option not given on the command line.

    Raises:
        ValueError: an unknown key (named), a bad value, or an unreadable file.
    """
    path = getattr(args, "config", None)
    parser = getattr(args, "_leaf_parser", None)
    if not path or parser is None:
        return args
    by_name: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "config"):
            continue
        by_name[action.dest] = action
        for opt in action.option_strings:
            by_name.setdefault(opt.lstrip("-").replace("-", "_"), action)
    for key, value in read_config_file(path).items():
        action = by_name.get(key)
        if action is None:
            raise ValueError(
                f"--config {path}: unknown option {key!r} for this command "
                f"(see --help for the options it takes)"
            )
        if _given_on_command_line(action, argv):
            continue
        setattr(args, action.dest, _convert(action, key, value, path))
    return args


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str | None,
    options: tuple[type, ...],
    func,
    exclude: dict[type, tuple[str, ...]] | None = None,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` whose flags are the fields of the ``options`` dataclasses.

    ``exclude`` leaves out fields of one dataclass (another one owns that flag).
    """
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for cls in options:
        add_dataclass_args(parser, cls, exclude=(exclude or {}).get(cls, ()))
    parser.set_defaults(func=func)
    return parser
