"""A user's own recordings into train/test manifests, split deterministically.

Two layouts are read from ``input_dir``:

- Hugging Face *audiofolder*: a ``metadata.csv`` (header row with ``file_name`` and a
  text column: ``text``, ``sentence`` or ``transcription``) or ``metadata.jsonl`` with
  the same keys; ``file_name`` is relative to the metadata file.
- sidecars: every audio file (``.wav``, ``.flac``, ``.mp3``, ...) below ``input_dir``
  with a same-named ``.txt`` next to it (``a/b.wav`` + ``a/b.txt``).

Nothing is dropped silently: audio without a transcript, a transcript (or metadata
row) without audio, an empty transcript or an unreadable file is an error that lists
them, unless ``skip_problems`` is set, in which case they are left out and counted.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from whisper_finetune.data.manifest import Record, TimedText, write_manifest
from whisper_finetune.data.recipes import AUDIO_EXTENSIONS, audio_duration_s
from whisper_finetune.staging import check_output_file

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("text", "sentence", "transcription")
_LIST_AT_MOST = 20  # items listed per kind of problem in an error message


@dataclass(frozen=True)
class FolderConfig:
    """Options of the folder recipe."""

    input_dir: str = field(default="", metadata={"help": "folder with the recordings"})
    target_dir: str | None = field(
        default=None, metadata={"help": "folder for train.jsonl and test.jsonl (None: input_dir)"}
    )
    test_ratio: float = field(default=0.05, metadata={"help": "share of files for the test set"})
    seed: int = field(default=0, metadata={"help": "seed of the train/test split"})
    text_column: str | None = field(
        default=None,
        metadata={
            "help": "metadata column with the transcript (None: text, sentence or "
            "transcription, whichever exists)"
        },
    )
    skip_problems: bool = field(
        default=False,
        metadata={
            "help": "leave out and count unmatched, empty or unreadable items instead of failing"
        },
    )
    allow_empty: bool = field(
        default=False, metadata={"help": "keep empty transcripts as no-speech samples"}
    )
    language: str = field(default="zh", metadata={"help": "language code of every record"})
    overwrite: bool = field(
        default=False,
        metadata={"help": "replace train.jsonl / test.jsonl already in the target folder"},
    )


@dataclass(frozen=True)
class FolderResult:
    """What :func:`prepare_folder` produced.

    Attributes:
        manifests: ``train``/``test`` to manifest path.
        utterances: ``train``/``test`` to number of records.
        problems: kind of problem to the items concerned (relative paths), all left out.
    """

    manifests: dict[str, str]
    utterances: dict[str, int]
    problems: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _abs(path: Path) -> Path:
    # abspath, not resolve(): keep symlinked folders as the user named them, as
    # manifest.write_manifest does
    return Path(os.path.abspath(path))


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _audio_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def _metadata_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None


def _jsonl_rows(path: Path, text: str) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except RecursionError:
            raise ValueError(f"{where}: invalid JSON: nested too deeply") from None
        except ValueError as exc:
            raise ValueError(f"{where}: invalid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: not a JSON object (got {type(row).__name__})")
        rows.append(row)
    return rows


def _read_metadata(path: Path, text_column: str | None) -> list[tuple[str, str]]:
    """(file_name, text) rows of a metadata.csv or metadata.jsonl."""
    text = _metadata_text(path)
    if not text.strip():
        raise ValueError(f"{path} is empty: it needs a header row (file_name,text) and rows")
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
        columns = set(reader.fieldnames or ())
    else:
        rows = _jsonl_rows(path, text)
        columns = set().union(*(r.keys() for r in rows)) if rows else set()
    if columns and not rows:
        raise ValueError(f"{path} lists no recordings (a header and no rows)")
    if "file_name" not in columns:
        raise ValueError(f"{path}: needs a 'file_name' column, found {sorted(columns)}")
    column = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if column is None or column not in columns:
        raise ValueError(
            f"{path}: no transcript column {text_column or TEXT_COLUMNS} in {sorted(columns)}"
        )
    return [(str(r["file_name"]).strip(), str(r.get(column) or "").strip()) for r in rows]


def _pairs_from_metadata(
    root: Path, meta: Path, config: FolderConfig, problems: dict
) -> dict[Path, str]:
    pairs: dict[Path, str] = {}
    for name, text in _read_metadata(meta, config.text_column):
        path = _abs(meta.parent / name)
        if path in pairs:
            problems["listed twice in the metadata"].append(name)
        elif not path.is_file():
            problems["transcript without audio"].append(name)
        else:
            pairs[path] = text
    for audio in _audio_files(root):
        if _abs(audio) not in pairs:
            problems["audio without transcript"].append(_rel(audio, root))
    return pairs


def _pairs_from_sidecars(root: Path, problems: dict) -> dict[Path, str]:
    pairs: dict[Path, str] = {}
    audio_stems = set()
    for audio in _audio_files(root):
        audio_stems.add(audio.with_suffix(""))
        txt = audio.with_suffix(".txt")
        if not txt.is_file():
            problems["audio without transcript"].append(_rel(audio, root))
            continue
        try:
            lines = txt.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            problems["transcript not UTF-8"].append(_rel(txt, root))
            continue
        pairs[_abs(audio)] = " ".join(line.strip() for line in lines if line.strip())
    for txt in sorted(root.rglob("*.txt")):
        if txt.with_suffix("") not in audio_stems:
            problems["transcript without audio"].append(_rel(txt, root))
    return pairs


def _split(items: list, ratio: float, seed: int) -> tuple[list, list]:
    """Seeded shuffle of the sorted items; the first ``ratio`` of them are the test set."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"test_ratio must be in [0, 1), got {ratio}")
    order = sorted(items)
    random.Random(seed).shuffle(order)
    n_test = round(ratio * len(order))
    if ratio > 0 and len(order) >= 2:
        n_test = min(max(n_test, 1), len(order) - 1)
    return sorted(order[n_test:]), sorted(order[:n_test])


def _raise_problems(problems: dict[str, list[str]], root: Path) -> None:
    lines = [f"{root}: the recordings and transcripts do not match:"]
    for kind, items in problems.items():
        shown = ", ".join(items[:_LIST_AT_MOST])
        more = f" and {len(items) - _LIST_AT_MOST} more" if len(items) > _LIST_AT_MOST else ""
        lines.append(f"  {kind} ({len(items)}): {shown}{more}")
    lines.append("Fix them, or pass --skip_problems to leave them out.")
    raise ValueError("\n".join(lines))


def _records(
    pairs: dict[Path, str], root: Path, config: FolderConfig, problems: dict
) -> list[Record]:
    """Records with durations; empty or unreadable items go to ``problems``."""
    records = []
    for path, text in tqdm(sorted(pairs.items()), desc="durations", unit="file"):
        if not text and not config.allow_empty:
            problems["empty transcript"].append(_rel(path, root))
            continue
        try:
            duration = round(audio_duration_s(path), 3)
        except ValueError as exc:
            logger.debug("%s", exc)
            problems["unreadable audio"].append(_rel(path, root))
            continue
        sentences = (TimedText(0.0, duration, text),) if text else ()
        records.append(
            Record(str(path), text, duration, sentences=sentences, language=config.language)
        )
    return records


def _check_outputs(outputs: dict[str, Path], root: Path, overwrite: bool) -> None:
    """Before any work: never write over a file the user already has (issue 27.3)."""
    inputs = tuple(root / n for n in ("metadata.csv", "metadata.jsonl"))
    for path in outputs.values():
        check_output_file(path, "--target_dir", sources=inputs)
    taken = [str(p) for p in outputs.values() if p.exists()]
    if taken and not overwrite:
        raise FileExistsError(
            f"{' and '.join(taken)} already exist{'s' if len(taken) == 1 else ''}: pass "
            "--overwrite to replace, or choose another --target_dir (nothing was written)"
        )


def prepare_folder(config: FolderConfig) -> FolderResult:
    """Index a folder of recordings with transcripts into train/test manifests.

    Args:
        config: the recipe's options.

    Returns:
        the manifests, their sizes, and the items left out by kind of problem.

    Raises:
        FileNotFoundError: ``input_dir`` does not exist.
        FileExistsError: ``train.jsonl`` or ``test.jsonl`` is already in the target
            folder (without ``overwrite``).
        ValueError: unmatched, empty or unreadable items (without ``skip_problems``), a
            bad metadata file or a bad ``test_ratio``.
    """
    if not config.input_dir:
        raise ValueError("--input_dir is required")
    root = _abs(Path(config.input_dir).expanduser())
    if not root.is_dir():
        raise FileNotFoundError(f"input folder not found: {root}")
    out_dir = Path(config.target_dir).expanduser() if config.target_dir else root
    outputs = {split: out_dir / f"{split}.jsonl" for split in ("train", "test")}
    _check_outputs(outputs, root, config.overwrite)
    problems: dict[str, list[str]] = {
        k: []
        for k in (
            "audio without transcript",
            "transcript without audio",
            "listed twice in the metadata",
            "empty transcript",
            "unreadable audio",
            "transcript not UTF-8",
        )
    }
    meta = next(
        (root / n for n in ("metadata.csv", "metadata.jsonl") if (root / n).is_file()), None
    )
    if meta is not None:
        logger.info("Reading transcripts from %s", meta)
        pairs = _pairs_from_metadata(root, meta, config, problems)
    else:
        logger.info("No metadata.csv in %s; pairing audio with same-named .txt files", root)
        pairs = _pairs_from_sidecars(root, problems)
    records = _records(pairs, root, config, problems)
    problems = {k: v for k, v in problems.items() if v}
    if problems and not config.skip_problems:
        _raise_problems(problems, root)
    for kind, items in problems.items():
        logger.warning("%d items left out: %s (e.g. %s)", len(items), kind, ", ".join(items[:5]))
    if not records:
        raise ValueError(f"{root}: no usable recordings with transcripts found")
    by_path = {r.audio_path: r for r in records}
    train, test = _split(list(by_path), config.test_ratio, config.seed)
    manifests, utterances = {}, {}
    for split, paths in (("train", train), ("test", test)):
        manifests[split] = str(outputs[split])
        utterances[split] = write_manifest((by_path[p] for p in paths), manifests[split])
        logger.info("Wrote %d records to %s", utterances[split], manifests[split])
    return FolderResult(manifests, utterances, {k: tuple(v) for k, v in problems.items()})
