"""The READMEs and the documentation site say only what the command line accepts.

Every ``whisper-finetune ...`` command in a fenced code block of README.md, README_zh.md
and ``docs/`` (also when run as ``python -m whisper_finetune``, under ``torchrun`` or
``accelerate launch``), and every inline ``whisper-finetune ...`` code span that names one
command, is parsed by the real argument parser: an unknown flag, a removed subcommand or
a misspelt choice fails here with the file and line. The two READMEs must hold the same
commands, and the configuration reference must be what the code renders.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from whisper_finetune.cli import build_parser
from whisper_finetune.cli.reference import render

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "README_zh.md"]
PAGES = sorted((ROOT / "docs").rglob("*.md"))

_FENCE = re.compile(r"^\s*```")
_INLINE = re.compile(r"`(whisper-finetune [^`]+)`")
# how the tool is started: the script, or the module under python / torchrun / accelerate
_ENTRY = re.compile(r"(?:^|[\s/])whisper-finetune$")


@dataclass(frozen=True)
class Command:
    file: Path
    line: int
    text: str

    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def _without_substitutions(text: str) -> str:
    """``$(...)`` (nested parentheses included) becomes one placeholder word."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, j = 0, i + 1
            while j < len(text):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append("SUBSTITUTED")
            i = j + 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _argv(text: str) -> list[str] | None:
    """The arguments after the program name, or None when ``text`` does not run it."""
    text = _without_substitutions(text)
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote: not a shell line
        return None
    for i, token in enumerate(tokens):
        if _ENTRY.search(token):
            rest = tokens[i + 1 :]
            break
        if token == "-m" and i + 1 < len(tokens) and tokens[i + 1] == "whisper_finetune":
            rest = tokens[i + 2 :]
            break
    else:
        return None
    # a shell pipeline or list ends the command; "..." stands for flags shown elsewhere
    for j, token in enumerate(rest):
        if token in {"&&", "||", ";", "|", ">", ">>"}:
            rest = rest[:j]
            break
    return [t for t in rest if t != "..."]


def commands_in(path: Path) -> list[Command]:
    """Commands of the fenced code blocks of ``path`` (continued lines joined)."""
    found: list[Command] = []
    in_block = False
    lang = ""
    pending, start = "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if _FENCE.match(line):
            in_block = not in_block
            lang = line.strip()[3:].strip().lower() if in_block else ""
            pending = ""
            continue
        if not in_block or lang not in {"", "bash", "sh", "shell", "console"}:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        text = text.removeprefix("$ ")
        # a command after "&&" (the README's bootstrap line) is the one to check
        for part in re.split(r"\s(?:&&|\|\||;)\s", text):
            if _argv(part) is not None:
                found.append(Command(path, start, part.strip()))
    return found


def inline_commands_in(path: Path) -> list[Command]:
    """Inline ``whisper-finetune ...`` code spans that name a single, whole command."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for match in _INLINE.finditer(line):
            text = match.group(1)
            # "prepare aishell \| folder" or "--backend=ct2|ggml" lists choices, not a command
            if "|" in text or " / " in text or "<" in text:
                continue
            found.append(Command(path, number, text))
    return found


def parse_error(argv: list[str]) -> str | None:
    """What argparse says about ``argv``, or None when it parses."""
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0 and ("-h" in argv or "--help" in argv):
            return None
        return err.getvalue().strip().splitlines()[-1] if err.getvalue() else f"exit {exc.code}"
    return None


ALL = [c for p in READMES + PAGES for c in commands_in(p) + inline_commands_in(p)]


def test_the_docs_hold_commands():
    # the extractor must see the commands; a broken extractor would pass every file
    assert len(ALL) >= 40
    readme = {c.text for c in commands_in(ROOT / "README.md")}
    assert any(t.startswith(".venv/bin/whisper-finetune demo") for t in readme)
    assert any("-m whisper_finetune finetune" in t for t in readme)


@pytest.mark.parametrize("command", ALL, ids=[c.where() for c in ALL])
def test_every_documented_command_parses(command: Command):
    argv = _argv(command.text)
    assert argv, f"{command.where()}: no subcommand in {command.text!r}"
    error = parse_error(argv)
    assert error is None, f"{command.where()}: {command.text!r}: {error}"


@pytest.mark.parametrize(
    "text",
    [
        "whisper-finetune finetune --no_such_flag=1",
        "whisper-finetune infer --backend=ctranslate --audio_path=a.wav",
        "whisper-finetune train --base_model=x",
        "torchrun --nproc_per_node=2 -m whisper_finetune evaluate --metrc=cer",
        "whisper-finetune prepare pack --manifest=$(python -c 'print(1)') --outptu=x.jsonl",
    ],
)
def test_a_wrong_command_fails(text):
    assert parse_error(_argv(text)) is not None


def test_the_two_readmes_hold_the_same_commands():
    english = [c.text for c in commands_in(READMES[0])]
    chinese = [c.text for c in commands_in(READMES[1])]
    assert english == chinese


def test_configuration_reference_is_up_to_date():
    page = ROOT / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run "
        "`python -m whisper_finetune.cli.reference docs/configuration.md`"
    )
