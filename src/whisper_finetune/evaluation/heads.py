"""Choose and write a model's alignment heads from a manifest with timed sentences.

:func:`update_alignment_heads` is what ``whisper-finetune alignment-heads`` and
``merge --alignment_data`` run: score the heads
(:func:`whisper_finetune.evaluation.alignment.choose_alignment_heads`), and when the
chosen ones time sentence ends better on held-out records than the model's current
ones, write them into ``generation_config.json`` (and into converted forms given).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from whisper_finetune.evaluation.alignment import HeadChoice, choose_alignment_heads

logger = logging.getLogger(__name__)

SCAN_LIMIT = 5000  # records read while looking for timed ones


def timed_records(manifest: str | os.PathLike, limit: int) -> list:
    """Up to ``limit`` records of a manifest that have timed ``sentences`` (read lazily:
    at most :data:`SCAN_LIMIT` records are looked at)."""
    from whisper_finetune.data.manifest import open_manifest

    found = []
    for i, record in enumerate(open_manifest(manifest)):
        if i >= SCAN_LIMIT or len(found) >= limit:
            break
        if any(s.text.strip() for s in record.sentences):
            found.append(record)
    return found


def update_alignment_heads(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    *,
    language: str | None = None,
    num_heads: int | None = None,
    max_records: int = 16,
    converted: tuple[str | os.PathLike, ...] = (),
    force: bool = False,
) -> HeadChoice:
    """Choose alignment heads for a transformers Whisper folder and write them into it.

    Args:
        model_path: a transformers Whisper folder (changed in place).
        data: a manifest with timed ``sentences``.
        language: forced language (default: the model's ``generation_config`` one, else zh).
        num_heads: heads to keep (default: as many as the model lists).
        max_records: timed records used (half choose, half check).
        converted: CTranslate2 or GGML folders of the same model to update too.
        force: write the chosen heads even when they do not beat the current ones.

    Raises:
        FileNotFoundError: for a missing model folder or manifest.
        ValueError: when the manifest has fewer than two timed records.
    """
    from whisper_finetune.models.modelcard import read_facts, write_converted_facts, write_facts

    model_path = Path(model_path)
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(f"{model_path} is not a transformers Whisper folder")
    if not Path(data).is_file():
        raise FileNotFoundError(f"manifest not found: {data}")
    records = timed_records(data, max_records)
    if len(records) < 2:
        raise ValueError(
            f"{data}: alignment heads need at least 2 records with timed 'sentences' "
            f"(found {len(records)})"
        )
    language = language or read_facts(model_path).language or "zh"
    choice = choose_alignment_heads(
        model_path, records, language=language, num_heads=num_heads, max_records=max_records
    )
    marker = model_path / "whisper_finetune.json"
    if marker.is_file():  # where the heads came from, beside where the model came from
        meta = json.loads(marker.read_text(encoding="utf-8"))
        meta["alignment_heads"] = choice.to_json() | {"data": str(data), "forced": force}
        marker.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if choice.better or force:
        write_facts(model_path, alignment_heads=choice.heads)
        for folder in converted:
            kind = write_converted_facts(folder, choice.heads)
            logger.info("alignment heads written into the %s model %s", kind, folder)
    else:
        logger.warning(
            "kept the model's alignment heads: the chosen ones time sentence ends worse on "
            "held-out records (%.3f s against %.3f s); --force writes them anyway",
            choice.mae_chosen,
            choice.mae_previous,
        )
    return choice
