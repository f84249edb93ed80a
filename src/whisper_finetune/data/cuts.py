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
multi-channel file) are left out and counted by reason. A cut longer than Whisper's 30 s
window (Lhotse's WenetSpeech and GigaSpeech cuts are whole recordings) becomes windows
of whole supervisions of at most 30 s.

It returns plain JSON objects in our manifest format; :mod:`whisper_finetune.data.manifest`
validates them. It imports no other module of this package.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
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
        split: cuts that became several records (mixed languages, or longer than
            ``max_duration``).
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
        s_start, s_end = _span(s, duration)
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


def _span(s: dict, duration: float) -> tuple[float, float]:
    """A supervision's (start, end) within its cut, clipped to the cut."""
    start = float(s.get("start", 0.0))
    return max(0.0, start), min(duration, start + float(s.get("duration", 0.0)))


def _windows(sups: list[dict], duration: float, max_duration: float) -> list[list[dict]]:
    """Consecutive supervisions grouped into windows of at most ``max_duration`` seconds
    (a supervision longer than that is a window of its own)."""
    groups: list[list[dict]] = []
    for s in sups:
        start, end = _span(s, duration)
        if groups and end - _span(groups[-1][0], duration)[0] <= max_duration:
            groups[-1].append(s)
        elif end > start:
            groups.append([s])
    return groups


def cut_records(cut: dict, max_duration: float | None = None) -> tuple[list[dict], str | None]:
    """The records of one cut, or ``([], reason)`` when it cannot be used.

    Args:
        cut: the cut as Lhotse writes it.
        max_duration: a longer cut (a whole hour-long recording with its segments, as
            Lhotse's WenetSpeech and GigaSpeech recipes give) is cut into windows of whole
            supervisions of at most this many seconds. ``None``: one record per cut.
    """
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
    whole = start < 1e-6 and abs(start + duration - float(rec.get("duration", 0.0))) < 1e-3
    if len({language_code(s.get("language")) for s in sups}) > 1:
        groups = [[s] for s in sups]  # one record per supervision: each keeps its language
    elif max_duration is not None and duration > max_duration:
        groups = _windows(sups, duration, max_duration)
    else:
        return [_record(path, start, duration, whole, sups)], None
    out = []
    for group in groups:
        g_start, g_end = _span(group[0], duration)[0], _span(group[-1], duration)[1]
        if g_end <= g_start:
            continue
        moved = [dict(s, start=float(s.get("start", 0.0)) - g_start) for s in group]
        out.append(_record(path, start + g_start, g_end - g_start, False, moved))
    return out, None


def convert_cuts(path: str | os.PathLike, max_duration: float | None = 30.0) -> CutConversion:
    """Read a CutSet file (``.jsonl`` or ``.jsonl.gz``) into record JSON objects; cuts
    longer than ``max_duration`` become windows of whole supervisions (see :func:`cut_records`).

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
            records, reason = cut_records(cut, max_duration)
            if reason:
                result.skipped[reason] += 1
                continue
            result.split += len(records) > 1
            where = f"{name}:{lineno}"
            result.records.extend((where, r) for r in records)
    return result
