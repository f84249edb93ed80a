"""Transformers model names: the embedded model, local folders and hub ids.

Needs no converter: CTranslate2 conversion sits above this module, in ``resolve``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from whisper_finetune.models.embedded import embedded_transformers
from whisper_finetune.models.store import (
    EMBEDDED_PREFIX,
    ModelNotFoundError,
    is_ct2_dir,
    is_transformers_dir,
)


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_model(name: str) -> str:
    """A hub id, from the local hub cache or (when reachable) the hub; else a clear error."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # not cached: fall through to the network check
        pass
    if not hub_reachable():
        raise ModelNotFoundError(
            f"model {name!r} is neither a local folder nor cached, and the Hugging Face hub "
            f"is unreachable (offline). Use a local model folder, or the offline "
            f"'{EMBEDDED_PREFIX}whisper-base' that ships with this package."
        )
    return name


def missing_folder(name: str) -> bool:
    """True when ``name`` names a local path (it exists, or is spelled like one), not a hub id."""
    return (
        Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    )


def resolve_transformers(name: str | os.PathLike) -> str:
    """A transformers model folder (or reachable hub id) for ``name``.

    Args:
        name: ``embedded:whisper-base``, a local transformers folder, or a hub id such as
            ``openai/whisper-small``.
    """
    name = str(name)
    if name.startswith(EMBEDDED_PREFIX):
        return str(embedded_transformers(name[len(EMBEDDED_PREFIX) :]))
    path = Path(name).expanduser()
    if path.is_dir():
        if is_transformers_dir(path):
            return str(path)
        if is_ct2_dir(path):
            raise ModelNotFoundError(
                f"{path} is a CTranslate2 model; use --backend=ct2, or turn it into a "
                f"transformers model with: whisper-finetune models import-ct2 {path} DST"
            )
        raise ModelNotFoundError(
            f"{path} holds no Whisper model (no model.bin, no config.json + weights)"
        )
    if missing_folder(name):
        raise ModelNotFoundError(f"model folder not found: {name}")
    return hub_model(name)
