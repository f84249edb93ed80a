"""Lhotse CutSets as our records: a cut's audio slice, its supervisions and languages.

Lhotse (https://github.com/lhotse-speech/lhotse) writes a CutSet as JSON Lines, usually
gzipped (``cuts.jsonl.gz``), one cut a line::

    {"id": "c1", "start": 12.0, "duration": 9.5, "channel": 0, "type": "MonoCut",
     "supervisions": [{"id": "s1", "recording_id": "r1", "start": 0.5, "duration": 3.0,
                       "channel": 0, "text": "...", "language": "Chinese"}, ...],
     "recording": {"id": "r1", "sources": [{"type": "file", "channels": [0],
                   "source": "/data/r1.opus"}], "sampling_rate": 48000,
                   "num_samples": ..., "duration": 3600.0, "channel_ids": [0]}}

This module reads that schema directly (Lhotse itself is not needed to train on a CutSet
file) and turns each ``MonoCut`` into one record: the cut's slice of the recording
(``start_time``/``end_time``, left out when the cut is the whole recording), its
supervisions as ``sentences`` with times relative to the cut (clipped to it), their texts
joined as ``sentence`` and their language as a Whisper code (``Chinese`` -> ``zh``). A
cut whose supervisions speak different languages becomes one record per supervision, so
that each keeps its own language token. Cuts that are not one file on disk (mixed or
padding cuts, URLs, in-memory audio, perturbed recordings, one channel of a
multi-channel file) are left out and counted by reason.

It returns plain JSON objects in our manifest format; :mod:`whisper_finetune.data.manifest`
validates them. It imports no other module of this package.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_GZIP_MAGIC = b"\x1f\x8b"


def _open_text(path: str | os.PathLike):
    with open(path, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8")


def is_gzip(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def is_cutset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Lhotse CutSet file (its first line is a cut)."""
    try:
        with _open_text(path) as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    return isinstance(obj, dict) and "supervisions" in obj and "start" in obj
    except (OSError, UnicodeDecodeError, ValueError, EOFError):
        return False
    return False


def language_code(language: str | None) -> str | None:
    """A Lhotse language (``Chinese``, ``zh``, ``Mandarin``) as a Whisper code."""
    if not language:
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    key = language.strip().lower()
    if key in LANGUAGES:
        return key
    return TO_LANGUAGE_CODE.get(key, language)


def _is_cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef"


def join_texts(texts: list[str]) -> str:
    """Join supervision texts: no space next to a CJK character, one space otherwise."""
    out = ""
    for text in (t.strip() for t in texts):
        if not text:
            continue
        if out and not (_is_cjk(out[-1]) or _is_cjk(text[0])):
            out += " "
        out += text
    return out


@dataclass
class CutConversion:
    """What :func:`convert_cuts` made of a CutSet.

    Attributes:
        records: ``(location, record JSON)`` for each record, in file order.
        cuts: cuts read.
        split: cuts split into one record per supervision (mixed languages).
        skipped: cuts left out, by reason.
    """

    records: list[tuple[str, dict]] = field(default_factory=list)
    cuts: int = 0
    split: int = 0
    skipped: Counter = field(default_factory=Counter)


def _record(path: str, start: float, duration: float, whole: bool, sups: list[dict]) -> dict:
    audio: dict = {"path": path}
    if not whole:
        audio["start_time"] = round(start, 3)
        audio["end_time"] = round(start + duration, 3)
    sentences = []
    for s in sups:
        s_start = max(0.0, float(s.get("start", 0.0)))
        s_end = min(duration, float(s.get("start", 0.0)) + float(s.get("duration", 0.0)))
        sentences.append(
            {
                "start": round(s_start, 3),
                "end": round(max(s_end, s_start), 3),
                "text": (s.get("text") or "").strip(),
            }
        )
    out = {
        "audio": audio,
        "sentence": join_texts([s["text"] for s in sentences]),
        "duration": round(duration, 3),
        "sentences": sentences,
    }
    language = language_code(sups[0].get("language")) if sups else None
    if language:
        out["language"] = language
    return out


def cut_records(cut: dict) -> tuple[list[dict], str | None]:
    """The records of one cut, or ``([], reason)`` when it cannot be used."""
    kind = cut.get("type", "MonoCut")
    if kind != "MonoCut":
        return [], f"{kind} (only MonoCut is supported)"
    rec = cut.get("recording")
    if not isinstance(rec, dict):
        return [], "no recording"
    if rec.get("transforms"):
        return [], "perturbed recording (transforms)"
    sources = rec.get("sources") or []
    if len(sources) != 1 or sources[0].get("type") != "file":
        return [], "audio not in one file"
    channels = rec.get("channel_ids") or [0]
    wanted = cut.get("channel", 0)
    wanted = sorted(wanted) if isinstance(wanted, list) else [wanted]
    if len(channels) > 1 and wanted != sorted(channels):
        return [], "one channel of a multi-channel recording"
    sups = sorted(cut.get("supervisions") or [], key=lambda s: float(s.get("start", 0.0)))
    if not sups:
        return [], "no supervisions"
    path = os.path.abspath(os.path.expanduser(sources[0]["source"]))
    start, duration = float(cut["start"]), float(cut["duration"])
    rec_duration = float(rec.get("duration", 0.0))
    whole = start < 1e-6 and abs(start + duration - rec_duration) < 1e-3
    if len({language_code(s.get("language")) for s in sups}) > 1:
        out = []
        for s in sups:
            s_start = max(0.0, float(s.get("start", 0.0)))
            s_end = min(duration, float(s.get("start", 0.0)) + float(s.get("duration", 0.0)))
            if s_end <= s_start:
                continue
            one = dict(s, start=0.0, duration=s_end - s_start)
            out.append(_record(path, start + s_start, s_end - s_start, False, [one]))
        return out, None
    return [_record(path, start, duration, whole, sups)], None


def convert_cuts(path: str | os.PathLike) -> CutConversion:
    """Read a CutSet file (``.jsonl`` or ``.jsonl.gz``) into record JSON objects.

    Raises:
        ValueError: a line is not JSON; the message names the file and line.
    """
    result = CutConversion()
    name = str(Path(path))
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                cut = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{name}:{lineno}: invalid JSON: {exc.msg}") from exc
            result.cuts += 1
            records, reason = cut_records(cut)
            if reason:
                result.skipped[reason] += 1
                continue
            result.split += len(records) > 1
            where = f"{name}:{lineno}"
            result.records.extend((where, r) for r in records)
    return result


def iter_cut_records(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """``(location, record JSON)`` of every usable cut of a CutSet file."""
    yield from convert_cuts(path).records
