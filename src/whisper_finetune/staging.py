"""Write a folder so that it appears complete or not at all.

Every model folder this package writes (rebuilt, converted, merged, assembled) is built in
a temporary sibling and renamed into place only when finished, so an interrupted run never
leaves a folder that looks complete.

Before a command replaces a folder, :func:`check_replaceable` decides whether it may: never
a folder that is or contains the command's input, never one holding anything but an
earlier output of the same kind (say what was found and stop). :func:`check_output_file`
and :func:`check_output_dir` check, before any work, that an output can be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_dir(dst: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``dst``; publish it as ``dst`` when the block ends.

    On an exception the temporary folder is removed and ``dst`` is left as it was.

    Args:
        dst: the folder to create.
        replace: when a non-empty ``dst`` exists at publication, swap it out (True), or
            keep it and discard ours (False: for caches that another process may have
            filled first, whose content is complete by construction).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private
        _publish(tmp, dst, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, dst: Path, replace: bool) -> None:
    if not replace and dst.is_dir() and any(dst.iterdir()):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    trash = None
    if dst.exists():
        # move the old folder aside first: there is never a moment without a complete dst
        trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, trash / dst.name)
    os.replace(tmp, dst)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


# --- the rule for replacing a folder -------------------------------------------------
#
# A command that replaces a folder (``convert --force``, ct2 and ggml alike, ``merge --overwrite``,
# ``models import-ct2 --overwrite``, ``demo --overwrite``, an evaluation's output folder,
# ``prepare pack``'s window folder) removes it only when
#
# 1. it does not contain (nor is) any of the command's inputs, and
# 2. everything in it is what an earlier run of the same command wrote, recognised by
#    this package's marker file or, for evaluation reports, by the report's own files.
#
# Otherwise it says what it found and stops, before any work.

MARKER_FILE = "whisper_finetune.json"

_MODEL_FILES = frozenset(
    {
        MARKER_FILE,
        # transformers
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "normalizer.json",
        "added_tokens.json",
        "special_tokens_map.json",
        "preprocessor_config.json",
        "processor_config.json",
        "chat_template.jinja",
        "README.md",  # the model card merge writes (and convert copies)
        # CTranslate2
        "model.bin",
        "vocabulary.json",
        "vocabulary.txt",
    }
)
_SHARD = re.compile(r"(model|pytorch_model)-\d{5}-of-\d{5}\.(safetensors|bin)")
# whisper.cpp files written by ``convert --format=ggml`` (ggml-model.bin, ggml-model-q8_0.bin)
_GGML = re.compile(r"ggml-model(-[a-z0-9_]+)?\.bin")
EVAL_FILES = ("summary.json", "utterances.jsonl")
_DEMO_ENTRIES = re.compile(
    r"corpus|packed|guard|eval|train|scales|merged|report|ct2-.+|" + re.escape(MARKER_FILE)
)


class UnsafeOutputError(ValueError):
    """Replacing (or writing into) an output location would lose something; nothing was touched."""


def _model_entry(name: str) -> bool:
    return name in _MODEL_FILES or bool(_SHARD.fullmatch(name) or _GGML.fullmatch(name))


def _eval_entry(name: str) -> bool:
    # the reports, their temporary files, and the per-rank files of a sharded run
    return bool(re.fullmatch(r"(summary\.json|utterances(\.rank\d+-of-\d+)?\.jsonl)(\.tmp)?", name))


def _marker_kind(folder: Path) -> str | None:
    try:
        data = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(data.get("kind", "model")) if isinstance(data, dict) else None


# kind -> (is this folder ours?, may this entry be in it?, what we call it)
_KINDS = {
    "model": (
        lambda d: _marker_kind(d) == "model",
        _model_entry,
        f"a model folder written by whisper-finetune (with {MARKER_FILE})",
    ),
    # an evaluation folder is recognised by its files alone (ranks of one run write
    # their own files into it side by side)
    "evaluation": (
        lambda d: True,
        _eval_entry,
        "an evaluation report (summary.json, utterances.jsonl)",
    ),
    "demo": (
        lambda d: _marker_kind(d) == "demo" or (d / "report" / "report.md").is_file(),
        lambda n: bool(_DEMO_ENTRIES.fullmatch(n)),
        "a demo output folder",
    ),
    "pack": (
        lambda d: True,
        lambda n: bool(re.fullmatch(r"window-\d{6}\.wav", n)),
        "packed windows (window-NNNNNN.wav)",
    ),
}


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_replaceable(
    dst: str | os.PathLike,
    *,
    kind: str = "model",
    sources: tuple[str | os.PathLike | None, ...] = (),
    what: str = "--output_dir",
) -> None:
    """Refuse, before any work, to replace a folder that is not ours to replace.

    A missing or empty ``dst`` is always fine. Otherwise ``dst`` must not be (or contain)
    any of ``sources``, must be a folder, and must hold only what an earlier run of the
    same kind wrote (see :data:`_KINDS`).

    Args:
        dst: the folder about to be replaced.
        kind: ``"model"``, ``"evaluation"``, ``"demo"`` or ``"pack"``.
        sources: the command's inputs (folders or files); ``None`` entries are ignored.
        what: the flag naming ``dst``, for the message.

    Raises:
        UnsafeOutputError: saying what was found; nothing has been touched.
    """
    is_ours, allowed, ours_desc = _KINDS[kind]
    dst = Path(dst).expanduser()
    target = dst.resolve()
    for source in sources:
        if source is None or str(source) == "":
            continue
        src = Path(source).expanduser().resolve()
        if not src.exists():  # a model name, not a path: nothing of it can be deleted
            continue
        if src == target or src.is_relative_to(target):
            raise UnsafeOutputError(
                f"{what} {dst} {'is' if src == target else 'contains'} the input {source}: "
                "replacing it would delete the input; choose another folder"
            )
    if not dst.exists() and not dst.is_symlink():
        return
    if not dst.is_dir():
        raise UnsafeOutputError(f"{what} {dst} exists and is not a folder; nothing was changed")
    names = sorted(p.name for p in dst.iterdir())
    if not names:
        return
    foreign = [n for n in names if not allowed(n)]
    if foreign or not is_ours(dst):
        found = foreign or names
        raise UnsafeOutputError(
            f"{what} {dst} holds {_listing(found)}, which is not {ours_desc}; "
            "refusing to replace it (nothing was changed): remove it yourself or choose "
            "another folder"
        )


def write_marker(folder: str | os.PathLike, kind: str = "model", **fields) -> Path:
    """Write the marker that lets a later run recognise ``folder`` as ours."""
    path = Path(folder) / MARKER_FILE
    path.write_text(json.dumps({"kind": kind, **fields}, indent=2) + "\n", encoding="utf-8")
    return path


def check_output_file(
    path: str | os.PathLike, what: str = "--output_file", sources: tuple = ()
) -> Path:
    """Check, before any work, that a file can be written at ``path``.

    Args:
        path: the file to write.
        what: the flag naming it, for the message.
        sources: the command's input files, which ``path`` must not be.

    Raises:
        UnsafeOutputError: ``path`` is an input, a folder, a parent is a file, or the
            nearest existing folder cannot be written.
    """
    path = Path(path).expanduser()
    for source in sources:
        if source and path.resolve() == Path(source).expanduser().resolve():
            raise UnsafeOutputError(
                f"{what} {path} is the input {source}: writing it would replace the input; "
                "choose another file"
            )
    if path.is_dir():
        raise UnsafeOutputError(f"{what} {path} is a folder; a file name is expected")
    if path.exists() and not os.access(path, os.W_OK):
        raise UnsafeOutputError(f"{what} {path} exists and is not writable")
    _check_creatable(path.parent, what, path)
    return path


def check_output_dir(path: str | os.PathLike, what: str = "--output_dir") -> Path:
    """Check, before any work, that files can be written into the folder ``path``.

    Raises:
        UnsafeOutputError: ``path`` (or a parent) is a file, or it cannot be written.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UnsafeOutputError(f"{what} {path} is a file; a folder is expected")
    _check_creatable(path, what, path)
    return path


def _check_creatable(folder: Path, what: str, target: Path) -> None:
    probe = folder
    while not probe.exists():
        if probe.is_symlink():  # a dangling link
            raise UnsafeOutputError(f"{what} {target}: {probe} is a broken symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        raise UnsafeOutputError(f"{what} {target}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UnsafeOutputError(f"{what} {target}: the folder {probe} is not writable")
    try:  # os.access is not the whole story (read-only mounts, ACLs)
        fd, name = tempfile.mkstemp(prefix=".write-test-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise UnsafeOutputError(
            f"{what} {target}: cannot write in {probe}: {exc.strerror or exc}"
        ) from exc


# --- one writer per output folder ----------------------------------------------------
#
# Two runs writing one output folder at once (two merges, two fine-tunes, a conversion
# and a merge) would each publish over the other, or mix one run's weights with the
# other's config. Every command that writes a folder holds :func:`output_lock` for its
# whole run; a second writer fails at once, naming the folder and the holder's pid.
#
# The lock file lives beside the folder (``.<name>.lock``), not in it: commands that
# publish atomically swap the folder itself, and a lock inside would be swapped away
# with it (those need a writable parent anyway; where the parent is read-only and the
# folder exists, the lock goes inside it). It is an advisory ``flock``, released by the kernel when its holder exits
# however it exits, and removed by its holder at the end of the run.


def holds_output_lock(param: str = "output_dir", what: str = "--output_dir"):
    """Decorate a function that writes the folder named by its argument ``param``: it runs
    holding :func:`output_lock` on that folder (nothing is locked when it is empty)."""
    import functools
    import inspect

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            folder = signature.bind(*args, **kwargs).arguments.get(param)
            if not folder:
                return fn(*args, **kwargs)
            with output_lock(folder, what):
                return fn(*args, **kwargs)

        return run

    return wrap


INNER_LOCK = ".whisper_finetune.lock"


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of the output folder ``folder``: ``<parent>/.<name>.lock``; inside an
    existing folder whose parent cannot be written (a mount point, a read-only corpus
    root), ``<folder>/.whisper_finetune.lock`` (every run decides alike)."""
    target = Path(os.path.abspath(Path(folder).expanduser()))
    beside = target.parent / f".{target.name or 'root'}.lock"
    if (
        target.is_dir()
        and not os.access(target.parent, os.W_OK | os.X_OK)
        and os.access(target, os.W_OK | os.X_OK)
    ):
        return target / INNER_LOCK
    return beside


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8"))
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid not yet recorded"


@contextmanager
def output_lock(folder: str | os.PathLike, what: str = "--output_dir") -> Iterator[Path]:
    """Hold the output folder ``folder`` for this run; fail at once if another run holds it.

    Args:
        folder: the output folder (it need not exist yet; its parent is created).
        what: the flag naming it, for the message.

    Yields:
        the lock file's path.

    Raises:
        UnsafeOutputError: another run (its pid, host and start time named) is writing
            ``folder``, or the lock file cannot be created.
    """
    import datetime
    import fcntl
    import socket

    lock = lock_path(folder)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnsafeOutputError(f"{what} {folder}: cannot create {lock.parent}: {exc}") from exc
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UnsafeOutputError(
                f"{what} {folder}: cannot create its lock file {lock}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UnsafeOutputError(
                f"{what} {folder} is being written by another run ({holder}; lock {lock}): "
                "wait for it to finish, or choose another folder; nothing was changed"
            ) from None
        # its last holder may have removed the file between our open and our lock
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    try:
        since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still held: a waiting opener sees it gone and retries
        os.close(fd)
