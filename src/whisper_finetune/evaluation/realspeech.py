"""The package's real Mandarin recordings as one guard set, with a kind for every clip.

:func:`write_real_manifest` joins the eight original clips (``assets.real_speech_manifest``)
and the 40 of ``real-zh-dev`` (``assets.real_zh_dev_manifest``) into one JSON Lines
manifest of 48 clips with absolute audio paths, keeping each line's ``source``,
``license`` and ``kind`` (the eight original clips carry no ``kind``; :data:`ORIGINAL_KINDS`
gives theirs). :func:`clip_kinds` reads the kinds back from any manifest, and
:func:`per_kind` sums a report's errors per kind, so forgetting is shown per source kind
(read, spontaneous, broadcast...) and not only in total.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

# kinds of the eight original clips (by file name), from their NOTICE.md descriptions:
# AISHELL-1, the FunASR example and test.wav are read sentences; the MOSS-TTSD pair is a
# live-stream host's talk; the SLAM-LLM prompt is unscripted speech
ORIGINAL_KINDS = {
    "MOSSTTSD_zh_spk1_moon.wav": "broadcast",
    "MOSSTTSD_zh_spk2_moon.wav": "broadcast",
    "MingUniAudio_BAC009S0915W0283.wav": "read",
    "MingUniAudio_10002287-00000094.wav": "read",
    "S3Tokenizer_BAC009S0764W0122.wav": "read",
    "RapidASR_asr_example_zh.wav": "read",
    "SLAMLLM_vallex_zh_prompt.wav": "spontaneous",
    "test.wav": "read",
}
UNKNOWN_KIND = "unknown"


def _lines(manifest: Path) -> Iterable[tuple[int | str, dict]]:
    """``(line, object)`` of a JSON Lines manifest, or ``("item N", object)`` of a JSON list."""
    text = manifest.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest}: not a JSON list: {exc}") from exc
        yield from ((f"item {i}", obj) for i, obj in enumerate(items))
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{manifest}:{n}: not JSON: {exc}") from exc


def _audio_path(obj: dict, manifest: Path, n: int | str) -> str:
    audio = obj.get("audio")
    path = audio.get("path") if isinstance(audio, dict) else None
    if not isinstance(path, str) or not path:
        raise ValueError(f"{manifest}:{n}: missing field 'audio.path'")
    return os.path.normpath(os.path.abspath(os.path.join(manifest.parent, path)))


def real_manifests() -> tuple[Path, Path]:
    """The two shipped manifests: the original eight clips, and real-zh-dev's 40."""
    from whisper_finetune.assets import real_speech_manifest, real_zh_dev_manifest

    return real_speech_manifest(), real_zh_dev_manifest()


def write_real_manifest(path: str | os.PathLike, manifests: Iterable[Path] | None = None) -> Path:
    """Write the shipped real clips (48 by default) as one JSON Lines manifest.

    Audio paths become absolute; every other field is kept, and a line without ``kind``
    gets :data:`ORIGINAL_KINDS`'s (or ``"unknown"``). A clip listed twice (the same audio
    file) is an error: it would count twice in the score.

    Returns:
        ``path``.
    """
    path = Path(path)
    seen: dict[str, str] = {}
    out = []
    for manifest in manifests if manifests is not None else real_manifests():
        manifest = Path(manifest)
        for n, obj in _lines(manifest):
            audio = _audio_path(obj, manifest, n)
            if audio in seen:
                raise ValueError(f"{manifest}:{n}: {audio} is already in the set ({seen[audio]})")
            seen[audio] = f"{manifest}:{n}"
            obj = dict(obj, audio=dict(obj["audio"], path=audio))
            obj.setdefault("kind", ORIGINAL_KINDS.get(Path(audio).name, UNKNOWN_KIND))
            out.append(json.dumps(obj, ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    logger.info("real-speech set: %d clips in %s", len(out), path)
    return path


def clip_kinds(manifest: str | os.PathLike) -> dict[str, str]:
    """``{absolute audio path: kind}`` of a manifest's lines (``"unknown"`` without one)."""
    manifest = Path(manifest)
    kinds = {}
    for n, obj in _lines(manifest):
        audio = _audio_path(obj, manifest, n)
        kind = obj.get("kind") or ORIGINAL_KINDS.get(Path(audio).name, UNKNOWN_KIND)
        kinds[audio] = str(kind)
    return kinds


def per_kind(utterances, kinds: dict[str, str]) -> dict[str, dict[str, float]]:
    """Errors, reference units, clips and CER per kind, for an evaluation's utterances.

    ``utterances`` are :class:`~whisper_finetune.evaluation.evaluate.UtteranceResult`
    (or dicts of ``utterances.jsonl``); ``kinds`` is :func:`clip_kinds`'s mapping. A clip
    missing from ``kinds`` is an error, not ``unknown``: the mapping is of another set.
    """
    sums: dict[str, dict[str, float]] = {}
    for u in utterances:
        audio = u["audio"] if isinstance(u, dict) else u.audio
        errors = u["errors"] if isinstance(u, dict) else u.errors
        units = u["ref_units"] if isinstance(u, dict) else u.ref_units
        key = os.path.normpath(os.path.abspath(audio))
        if key not in kinds:
            raise KeyError(f"{audio} is not in the set whose kinds were given")
        row = sums.setdefault(kinds[key], {"clips": 0, "errors": 0, "ref_units": 0})
        row["clips"] += 1
        row["errors"] += errors
        row["ref_units"] += units
    for row in sums.values():
        row["cer"] = row["errors"] / row["ref_units"] if row["ref_units"] else 0.0
    return dict(sorted(sums.items(), key=lambda kv: -kv[1]["clips"]))
