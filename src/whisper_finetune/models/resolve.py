"""Where models come from: the embedded whisper-base, local folders and hub ids.

``resolve_model`` turns a name into a folder (or file) the chosen backend loads. A
transformers folder asked for by the CTranslate2 or whisper.cpp backend is converted once
into the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from whisper_finetune.models.convert import convert_to_ct2
from whisper_finetune.models.embedded import embedded_ct2
from whisper_finetune.models.ggml import (
    QNT_VERSION_FACTOR,
    convert_to_ggml,
    file_type_number,
    ggml_file_name,
)
from whisper_finetune.models.ggml_check import find_ggml_file, read_ggml_header
from whisper_finetune.models.hub import hub_model, missing_folder, resolve_transformers
from whisper_finetune.models.store import (
    BACKENDS,
    EMBEDDED_PREFIX,
    ModelNotFoundError,
    cache_home,
    is_ct2_dir,
    is_transformers_dir,
)

logger = logging.getLogger(__name__)


def resolve_model(name: str | os.PathLike, backend: str = "transformers") -> str:
    """Resolve a model name to something the backend loads.

    Args:
        name: ``embedded:whisper-base``, a local folder (transformers or CTranslate2), or
            a hub id such as ``openai/whisper-small``.
        backend: ``transformers``, ``ct2`` or ``whispercpp``. A transformers folder asked
            for by the ct2 backend is converted once (float32) into the cache; by the
            whispercpp backend, once to GGML f16.

    Returns:
        a local folder path (a ``ggml-*.bin`` file for whispercpp), or a hub id when the
        hub is reachable.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    name = str(name)
    if backend == "transformers":
        return resolve_transformers(name)
    if backend == "whispercpp":
        return resolve_ggml(name)
    if name.startswith(EMBEDDED_PREFIX):
        return str(embedded_ct2(name[len(EMBEDDED_PREFIX) :]))
    path = Path(name).expanduser()
    if path.is_dir():
        if is_ct2_dir(path):
            return str(path)
        if is_transformers_dir(path):
            return str(converted_ct2(path))
        raise ModelNotFoundError(
            f"{path} holds no Whisper model (no model.bin, no config.json + weights)"
        )
    if missing_folder(name):
        raise ModelNotFoundError(f"model folder not found: {name}")
    return hub_model(name)


def converted_ct2(model_dir: str | os.PathLike, quantization: str = "float32") -> Path:
    """A cached CTranslate2 conversion of a transformers folder, redone when it changes."""
    model_dir = Path(model_dir).resolve()
    weights = max((p.stat().st_mtime_ns for p in model_dir.iterdir() if p.is_file()), default=0)
    key = hashlib.sha1(f"{model_dir}|{weights}|{quantization}".encode()).hexdigest()[:10]
    dst = cache_home() / "ct2-cache" / f"{model_dir.name}-{quantization}-{key}"
    if is_ct2_dir(dst):
        return dst
    logger.info("converting %s to CTranslate2 (%s) once, into %s", model_dir, quantization, dst)
    convert_to_ct2(model_dir, dst, quantization=quantization, verify=False)
    return dst


def resolve_ggml(name: str | os.PathLike, quantization: str = "default") -> str:
    """A whisper.cpp model file for ``name``.

    Args:
        name: a ``ggml-*.bin`` file or a folder holding one (used as it is), or anything
            :func:`resolve_transformers` takes (converted once into the cache).
        quantization: the GGML type to convert to (``default``: f16); a given model file
            must already be of this type.

    Raises:
        ValueError: when a given model file is of another type than ``quantization``.
    """
    name = str(name)
    found = None if name.startswith(EMBEDDED_PREFIX) else find_ggml_file(name)
    if found is None and Path(name).expanduser().is_dir():
        several = sorted(p.name for p in Path(name).expanduser().glob("ggml-*.bin"))
        if len(several) > 1:  # not "no Whisper model" (issue 27.15): say which to name
            raise ValueError(
                f"{name} holds {len(several)} whisper.cpp model files ({', '.join(several)}): "
                f"name one of them, e.g. --model_path={Path(name) / several[0]}"
            )
    if found is None:
        wanted = "f16" if quantization == "default" else quantization
        return str(converted_ggml(resolve_transformers(name), wanted))
    if quantization != "default":
        ftype = read_ggml_header(found)["ftype"] % QNT_VERSION_FACTOR
        if ftype != file_type_number(quantization):
            raise ValueError(
                f"{found} is not a {quantization} model (whisper.cpp file type {ftype}); "
                "a whisper.cpp model runs in its own type: convert with --quantization"
            )
    return str(found)


def converted_ggml(model_dir: str | os.PathLike, quantization: str = "f16") -> Path:
    """A cached whisper.cpp conversion of a transformers folder, redone when it changes."""
    model_dir = Path(model_dir).resolve()
    weights = max((p.stat().st_mtime_ns for p in model_dir.iterdir() if p.is_file()), default=0)
    key = hashlib.sha1(f"{model_dir}|{weights}|{quantization}".encode()).hexdigest()[:10]
    dst = cache_home() / "ggml-cache" / f"{model_dir.name}-{quantization}-{key}"
    if (dst / ggml_file_name(quantization)).is_file():
        return dst / ggml_file_name(quantization)
    logger.info(
        "converting %s to whisper.cpp GGML (%s) once, into %s", model_dir, quantization, dst
    )
    return convert_to_ggml(model_dir, dst, quantization=quantization, force=True, verify=False)
