"""Convert a transformers Whisper folder to CTranslate2, for faster-whisper.

The output folder is self-describing: besides ``model.bin``, ``config.json`` and
``vocabulary.json`` it holds ``tokenizer.json`` (without it faster-whisper tries to
download ``openai/whisper-tiny``'s tokenizer) and ``preprocessor_config.json`` (faster-whisper
reads the number of mel bins from it: 128 for large-v3). transformers 5 no longer writes
``preprocessor_config.json`` (only ``processor_config.json``), so it is written into the
source folder first when missing; the plain
``ct2-transformers-converter --copy_files tokenizer.json preprocessor_config.json`` then
works on that folder too. A ``whisper_finetune.json`` records where the model came from.

The conversion is written to a temporary sibling folder and renamed into place, so an
interrupted run never leaves a folder that looks complete.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path

from whisper_finetune.staging import MARKER_FILE, check_replaceable, staged_dir

logger = logging.getLogger(__name__)

QUANTIZATIONS = (
    "float32",
    "float16",
    "bfloat16",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
)
COPY_FILES = ("tokenizer.json", "preprocessor_config.json")
PROVENANCE_FILE = MARKER_FILE


def ensure_preprocessor_config(model_dir: str | os.PathLike) -> Path:
    """Make sure a transformers folder has ``preprocessor_config.json``; write it if not.

    The settings come from the folder's ``processor_config.json`` when transformers 5
    wrote one, else from Whisper's defaults with the model's number of mel bins.

    Args:
        model_dir: a transformers Whisper folder.

    Returns:
        The path of ``preprocessor_config.json``.

    Raises:
        OSError: if the file is missing and the folder is not writable.
    """
    model_dir = Path(model_dir)
    target = model_dir / "preprocessor_config.json"
    if target.is_file():
        return target
    from transformers import WhisperFeatureExtractor

    try:
        extractor = WhisperFeatureExtractor.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError):
        n_mels = json.loads((model_dir / "config.json").read_text()).get("num_mel_bins", 80)
        extractor = WhisperFeatureExtractor(feature_size=int(n_mels))
    extractor.to_json_file(str(target))
    logger.info("wrote %s (transformers 5 saves only processor_config.json)", target)
    return target


def _provenance(source: str, quantization: str) -> dict:
    from whisper_finetune.version import __version__

    return {
        "kind": "model",
        "format": "ctranslate2",
        "source_model": source,
        "quantization": quantization,
        "whisper_finetune_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def convert_to_ct2(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    quantization: str = "float16",
    force: bool = False,
    verify: bool = True,
) -> Path:
    """Convert a transformers Whisper model to a CTranslate2 folder.

    Args:
        model_dir: a transformers Whisper folder, or ``embedded:whisper-base``.
        output_dir: where the CTranslate2 model goes; must not exist or be empty
            unless ``force``.
        quantization: weight type, one of :data:`QUANTIZATIONS`. ``float16`` halves
            the size and is what GPUs run; CPUs run it as float32. ``int8`` is the
            fastest on CPU. Use ``float32`` to compare with the source exactly.
        force: replace a non-empty ``output_dir``, which must hold only an earlier
            conversion (or other model folder) of this package, and must not contain
            the source (see :func:`whisper_finetune.staging.check_replaceable`).
        verify: load the converted model with CTranslate2 before publishing it.

    Returns:
        ``output_dir`` as a Path.

    Raises:
        ValueError: for an unknown quantization.
        FileExistsError: if ``output_dir`` is not empty and ``force`` is false.
        whisper_finetune.staging.UnsafeOutputError: if ``output_dir`` is or contains the
            source, or holds anything but a model folder this package wrote.
        FileNotFoundError: if the source is not a local transformers Whisper folder or
            lacks ``tokenizer.json``.
    """
    from ctranslate2.converters import TransformersConverter

    from whisper_finetune.models.hub import resolve_transformers
    from whisper_finetune.models.store import is_transformers_dir

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    source = str(model_dir)
    src = Path(resolve_transformers(source))
    if not is_transformers_dir(src):
        raise FileNotFoundError(f"{source} is not a local transformers Whisper folder")
    if not (src / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{src} has no tokenizer.json (the fast tokenizer); faster-whisper needs it. "
            f"Save the tokenizer with WhisperTokenizerFast.save_pretrained({str(src)!r})"
        )
    dst = Path(output_dir).expanduser()
    check_replaceable(dst, kind="model", sources=(src,), what="--output_dir")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not force:
        raise FileExistsError(f"{dst} exists and is not empty (use --force to replace it)")
    copy_files = list(COPY_FILES)
    try:
        ensure_preprocessor_config(src)
    except OSError as exc:  # read-only source: write the file into the output instead
        logger.warning("cannot write preprocessor_config.json into %s (%s)", src, exc)
        copy_files.remove("preprocessor_config.json")

    with staged_dir(dst) as built:
        logger.info("converting %s to CTranslate2 (%s)", src, quantization)
        # the converter refuses an existing folder unless forced; ours is the empty stage
        TransformersConverter(str(src), copy_files=copy_files).convert(
            str(built), quantization=quantization, force=True
        )
        if "preprocessor_config.json" not in copy_files:
            from whisper_finetune.models.store import write_preprocessor_config

            n_mels = json.loads((src / "config.json").read_text()).get("num_mel_bins", 80)
            write_preprocessor_config(built, n_mels=int(n_mels))
        facts = _keep_facts(src, built)
        (built / PROVENANCE_FILE).write_text(
            json.dumps({**_provenance(source, quantization), **facts}, indent=2) + "\n",
            encoding="utf-8",
        )
        if verify:
            _verify(built)
    logger.info("wrote CTranslate2 model (%s) to %s", quantization, dst)
    return dst


def _verify(ct2_dir: Path) -> None:
    """Check the files faster-whisper needs, and that CTranslate2 loads the model."""
    import ctranslate2

    for name in ("model.bin", "config.json", *COPY_FILES):
        if not (ct2_dir / name).is_file():
            raise RuntimeError(f"conversion produced no {name} in {ct2_dir}")
    ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="default")


def _keep_facts(src: Path, built: Path) -> dict:
    """Keep the source's language, task and alignment heads: ``generation_config.json``
    and the model card are copied beside ``model.bin`` (CTranslate2's converter already
    put ``generation_config.alignment_heads`` into its ``config.json``; faster-whisper
    reads no default language, so it is recorded for our loader and for people)."""
    import shutil

    from whisper_finetune.models.modelcard import CARD_FILE, GENERATION_CONFIG, read_facts

    for name in (GENERATION_CONFIG, CARD_FILE):
        if (src / name).is_file():
            shutil.copy2(src / name, built / name)
    facts = read_facts(src)
    ct2_config = built / "config.json"
    if facts.alignment_heads and ct2_config.is_file():
        heads = json.loads(ct2_config.read_text(encoding="utf-8")).get("alignment_heads")
        if [tuple(h) for h in heads or []] != list(facts.alignment_heads):
            raise RuntimeError(
                f"{ct2_config}: alignment_heads {heads} differ from the source's "
                f"generation_config.json {list(facts.alignment_heads)}"
            )
    return facts.to_json()
