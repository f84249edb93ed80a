"""Data manifests: the original project's JSON format, read and written.

One record per utterance::

    {"audio": {"path": "a.wav", "start_time": 1.0, "end_time": 3.5},
     "duration": 2.5, "sentence": "你好", "language": "zh",
     "sentences": [{"start": 0.0, "end": 2.5, "text": "你好"}],
     "prompt": "上一句或领域词语"}

``prompt`` is optional: the text a prompt-conditioned fine-tune (``--prompt_ratio``,
:mod:`whisper_finetune.training.prompts`) puts in front of this utterance when it draws
one for it, before the previous slice's text or ``--prompt_file``'s phrases.

Both a JSON list (the original ``.json`` files) and JSON Lines are read; the format is
detected from the content, not the extension. JSON Lines are read lazily: an index of
line offsets, records built on access (:class:`Manifest`), so a process holds a few
bytes per record. A Lhotse CutSet file is accepted too (:mod:`whisper_finetune.data.cuts`).
Relative audio paths resolve against the manifest's own folder. A bad record raises
:class:`ManifestError` naming the file, the line and the field. This module imports
nothing heavy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisper_finetune.data.inputs import (
    ManifestError,
    is_json_list,
    load_json_list,
    require_file,
    whisper_language,
)
from whisper_finetune.data.lineindex import LineIndex

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimedText:
    """A sentence with its timestamps, in seconds relative to the record's audio."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Record:
    """One utterance of a manifest."""

    audio_path: str
    sentence: str
    duration: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    sentences: tuple[TimedText, ...] = ()
    language: str | None = None
    # text before this utterance, for prompt-conditioned training (None: no prompt of its own)
    prompt: str | None = None
    # where the record came from, for error messages: "manifest.jsonl:12"
    origin: str = field(default="", compare=False)

    def to_json(self, relative_to: str | os.PathLike | None = None) -> dict[str, Any]:
        """The record as the manifest's JSON object."""
        path = self.audio_path
        if relative_to is not None:
            with contextlib.suppress(ValueError):  # another drive on Windows
                path = os.path.relpath(path, relative_to)
        audio: dict[str, Any] = {"path": path}
        if self.start_time is not None:
            audio["start_time"] = self.start_time
        if self.end_time is not None:
            audio["end_time"] = self.end_time
        out: dict[str, Any] = {"audio": audio, "sentence": self.sentence}
        if self.duration is not None:
            out["duration"] = round(float(self.duration), 3)
        if self.sentences:
            out["sentences"] = [
                {"start": s.start, "end": s.end, "text": s.text} for s in self.sentences
            ]
        if self.language:
            out["language"] = self.language
        if self.prompt is not None:
            out["prompt"] = self.prompt
        return out


def _number(obj: dict, key: str, where: str, required: bool = False) -> float | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ManifestError(f"{where}: missing field '{key}'")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{where}: field '{key}' must be a number, got {value!r}")
    if not math.isfinite(value):  # json.loads accepts NaN and Infinity
        raise ManifestError(f"{where}: field '{key}' must be a finite number, got {value!r}")
    if value < 0:
        raise ManifestError(f"{where}: field '{key}' must not be negative, got {value!r}")
    return float(value)


def parse_record(obj: Any, where: str, base_dir: str | os.PathLike = ".") -> Record:
    """Validate one JSON object and turn it into a :class:`Record`.

    Args:
        obj: the decoded JSON value of one line or list item.
        where: ``"file:line"`` used in error messages.
        base_dir: folder that relative audio paths resolve against.

    Raises:
        ManifestError: naming ``where`` and the offending field.
    """
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    audio = obj.get("audio")
    if not isinstance(audio, dict):
        raise ManifestError(f"{where}: field 'audio' must be an object with a 'path'")
    path = audio.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ManifestError(f"{where}: field 'audio.path' must be a non-empty string")
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        path = os.path.normpath(os.path.join(base_dir, path))
    sentence = obj.get("sentence")
    if not isinstance(sentence, str):
        raise ManifestError(f"{where}: field 'sentence' must be a string, got {sentence!r}")
    start = _number(audio, "start_time", f"{where}: audio")
    end = _number(audio, "end_time", f"{where}: audio")
    if start is not None and end is not None and end <= start:
        raise ManifestError(
            f"{where}: field 'audio.end_time' ({end}) must exceed start_time ({start})"
        )
    duration = _number(obj, "duration", where)
    sentences = []
    raw = obj.get("sentences") or []
    if not isinstance(raw, list):
        raise ManifestError(f"{where}: field 'sentences' must be a list")
    for i, s in enumerate(raw):
        w = f"{where}: sentences[{i}]"
        if not isinstance(s, dict):
            raise ManifestError(f"{w} must be an object with start, end, text")
        s_start = _number(s, "start", w, required=True)
        s_end = _number(s, "end", w, required=True)
        if s_end < s_start:
            raise ManifestError(f"{w}: 'end' ({s_end}) is before 'start' ({s_start})")
        text = s.get("text")
        if not isinstance(text, str):
            raise ManifestError(f"{w}: field 'text' must be a string")
        sentences.append(TimedText(s_start, s_end, text))
    language = obj.get("language")
    if language is not None and not isinstance(language, str):
        raise ManifestError(f"{where}: field 'language' must be a string")
    if language and not whisper_language(language):
        raise ManifestError(
            f"{where}: field 'language': {language!r} is not a Whisper language code or name "
            "(zh, en, ja, ..., or chinese, mandarin, ...)"
        )
    prompt = obj.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ManifestError(f"{where}: field 'prompt' must be a string, got {prompt!r}")
    return Record(
        audio_path=path,
        sentence=sentence,
        duration=duration,
        start_time=start,
        end_time=end,
        sentences=tuple(sentences),
        language=language or None,
        # a blank prompt is no prompt: the record then draws one like any other
        prompt=prompt if prompt and prompt.strip() else None,
        origin=where,
    )


def _loads(text: str, where: str) -> Any:
    """One line's JSON value; a line that does not parse is a ManifestError naming it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: invalid JSON: {exc.msg}") from None
    except RecursionError:  # "[[[[...": Python's parser gives up, without a line
        raise ManifestError(f"{where}: invalid JSON: nested too deeply") from None


def record_identity(record: Record) -> tuple:
    """Every compared field of a record (not its origin): two records with the same
    identity are exact duplicates, reported by ``prepare validate`` and ``pack``."""
    return tuple(getattr(record, f.name) for f in dataclasses.fields(record) if f.compare)


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {exc.start + 1}); "
            "save the manifest as UTF-8"
        ) from None


class Manifest(Sequence):
    """The records of a manifest, built on access: a few bytes per record in memory.

    JSON Lines files are indexed (line offsets, see :class:`LineIndex`) and each record
    is parsed when it is read; a JSON list (the original format) is parsed at once.
    Indexing with a slice, or :meth:`select` with positions, gives a view that shares
    the file. It compares equal to a list of the same records, ``+`` makes a list, and it
    pickles small (DataLoader workers reopen the file).

    Args:
        path: the manifest.
        check: parse every record once now, so that a bad line fails here rather than
            mid-training (the records are not kept).

    Raises:
        FileNotFoundError: no such file.
        ManifestError: no records (empty, or only blank lines), text that is not UTF-8,
            invalid JSON or a bad field; the message names the file and line.
    """

    def __init__(self, path: str | os.PathLike, check: bool = True):
        self.path = Path(path)
        require_file(self.path)
        self.base_dir = self.path.parent
        self._items: list | None = None
        self._positions: list[int] | None = None  # for views of a JSON list
        self._index: LineIndex | None = None
        if is_json_list(self.path):
            self._items = load_json_list(self.path, self.path.read_bytes())
        else:
            self._index = LineIndex(self.path)
        if len(self) == 0:
            raise ManifestError(
                f"{self.path}: the manifest holds no records (it is empty or only blank lines)"
            )
        if check and not self._checked_before():
            for _ in self:
                pass

    def _checked_before(self) -> bool:
        """Whether ``prepare validate`` parsed this very file and found every record
        well-formed (its cache says so), so that opening it need not parse it again."""
        from whisper_finetune.data.checkcache import CheckCache

        cache = CheckCache.load(self.path)
        return cache is not None and cache.malformed == 0 and len(cache) == len(self)

    def __len__(self) -> int:
        if self._index is not None:
            return len(self._index)
        return len(self._positions if self._positions is not None else self._items)

    def _where(self, i: int) -> str:
        if self._index is not None:
            return f"{self.path}:{self._index.line_number(i)}"
        n = self._positions[i] if self._positions is not None else i
        return f"{self.path}: item {n + 1}"

    def raw(self, i: int) -> tuple[str, Any]:
        """``(location, decoded JSON value)`` of the ``i``-th record, unvalidated."""
        where = self._where(i)
        if self._index is None:
            return where, self._items[self._positions[i] if self._positions is not None else i]
        return where, _loads(_decode(self._index.read(i), where), where)

    def iter_raw(self) -> Iterator[tuple[str, int, Any]]:
        """``(location, line, decoded JSON or the ManifestError)`` for every record, read
        sequentially; a bad line does not stop the iteration (for ``prepare validate``)."""
        if self._index is None:
            for i in range(len(self)):
                where, obj = self.raw(i)
                yield where, int(where.rsplit(" ", 1)[1]), obj
            return
        for line, data in self._index.iter_lines():
            where = f"{self.path}:{line}"
            try:
                yield where, line, _loads(_decode(data, where), where)
            except ManifestError as exc:
                yield where, line, exc

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.select(range(len(self))[i])
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} of {len(self)}")
        where, obj = self.raw(i % len(self))
        return parse_record(obj, where, self.base_dir)

    def __iter__(self) -> Iterator[Record]:
        for where, _line, obj in self.iter_raw():
            if isinstance(obj, ManifestError):
                raise obj
            yield parse_record(obj, where, self.base_dir)

    def select(self, positions) -> Manifest:
        """A view of the records at ``positions`` (a range, list or integer array)."""
        view = Manifest.__new__(Manifest)
        view.path, view.base_dir, view._items = self.path, self.base_dir, self._items
        view._index, view._positions = None, None
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if self._index is not None:
            view._index = self._index.select(positions)
        else:
            own = self._positions if self._positions is not None else range(len(self._items))
            view._positions = [own[int(p)] for p in positions]
        return view

    def nbytes(self) -> int:
        """Memory of the index, in bytes (a JSON list: 0, its items are counted elsewhere)."""
        return self._index.nbytes() if self._index is not None else 0

    def __eq__(self, other) -> bool:
        if not isinstance(other, (Sequence)) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None

    def __add__(self, other) -> list[Record]:
        return list(self) + list(other)

    def __radd__(self, other) -> list[Record]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"Manifest({str(self.path)!r}, {len(self)} records)"


def open_manifest(path: str | os.PathLike, check: bool = True) -> Sequence[Record]:
    """The records of a manifest, lazily (see :class:`Manifest`); a Lhotse CutSet file
    (``.jsonl.gz`` of cuts) is converted to records in memory."""
    from whisper_finetune.data import cuts

    require_file(path)
    if cuts.is_cutset(path):
        try:
            found = cuts.convert_cuts(path)
        except (ValueError, UnicodeDecodeError, EOFError, OSError) as exc:
            raise ManifestError(f"{path}: cannot read the CutSet: {exc}") from exc
        if found.skipped:
            logger.warning("%s: left out cuts: %s", path, dict(found.skipped))
        base = Path(path).parent
        records = [parse_record(obj, where, base) for where, obj in found.records]
        if not records:
            raise ManifestError(f"{path}: the CutSet holds no usable cuts ({dict(found.skipped)})")
        return records
    if cuts.is_gzip(path):
        raise ManifestError(f"{path}: a gzip file that is not a Lhotse CutSet; decompress it")
    return Manifest(path, check=check)


def iter_manifest(path: str | os.PathLike) -> Iterator[Record]:
    """Yield the records of a manifest (JSON list or JSON Lines), validating each."""
    yield from Manifest(path, check=False)


def read_manifest(path: str | os.PathLike) -> Sequence[Record]:
    """All records of a manifest, every one checked now and built again on access.

    The result is a lazy :class:`Manifest` (a sequence that compares equal to the list of
    its records); see :func:`open_manifest`.
    """
    return open_manifest(path, check=True)


def write_manifest(records: Iterable[Record], path: str | os.PathLike) -> int:
    """Write records as JSON Lines, atomically, with paths relative to the manifest.

    Returns:
        the number of records written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # abspath, not resolve(): readers join relative paths to the manifest folder as
    # written, so a path made relative to a symlink's target would point elsewhere
    base = os.path.abspath(path.parent)
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r.to_json(relative_to=base), ensure_ascii=False))
                f.write("\n")
                n += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n
