"""Data manifests: the original project's JSON format, read and written.

One record per utterance::

    {"audio": {"path": "a.wav", "start_time": 1.0, "end_time": 3.5},
     "duration": 2.5, "sentence": "你好", "language": "zh",
     "sentences": [{"start": 0.0, "end": 2.5, "text": "你好"}]}

Both a JSON list (the original ``.json`` files) and JSON Lines are read; the format is
detected from the content, not the extension. Relative audio paths resolve against the
manifest's own folder. A bad record raises :class:`ManifestError` naming the file, the
line and the field. This module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A manifest record is malformed; the message names file, line and field."""


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
    return Record(
        audio_path=path,
        sentence=sentence,
        duration=duration,
        start_time=start,
        end_time=end,
        sentences=tuple(sentences),
        language=language or None,
        origin=where,
    )


def iter_manifest(path: str | os.PathLike) -> Iterator[Record]:
    """Yield the records of a manifest (JSON list or JSON Lines), validating each."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    base_dir = path.parent
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        # line numbers of a JSON list are the items' positions (1-based)
        for i, obj in enumerate(items, start=1):
            yield parse_record(obj, f"{path}: item {i}", base_dir)
        return
    # split on "\n" only: str.splitlines() also breaks at U+2028, U+2029 and U+0085,
    # which json.dumps(ensure_ascii=False) leaves unescaped inside strings
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
        yield parse_record(obj, f"{path}:{lineno}", base_dir)


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """All records of a manifest; see :func:`iter_manifest`."""
    return list(iter_manifest(path))


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
