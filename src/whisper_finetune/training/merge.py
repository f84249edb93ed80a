"""Merge a LoRA/AdaLoRA adapter into its base model: a standalone Whisper folder.

The base model is the one named in the adapter's ``adapter_config.json``
(``base_model_name_or_path``), resolved through
:func:`whisper_finetune.models.resolve.resolve_model`, so ``embedded:whisper-base``, hub ids and
folders all work; nothing is guessed from paths. The output holds the merged weights,
``config.json``, ``generation_config.json``, the tokenizer (``tokenizer.json``
included) and ``preprocessor_config.json`` (which faster-whisper reads its mel settings
from), plus ``whisper_finetune.json`` recording where it came from, and a model card
``README.md`` (:mod:`whisper_finetune.models.modelcard`); the run's language and task go
into ``generation_config.json``.

The folder is written under a temporary name next to the destination and renamed
into place at the end, so an interrupted merge never leaves a folder that looks
complete.

``scale`` merges a scaled adapter, ``W = W_base + scale * delta``: 0 gives the base
weights, 1 the adapted model, values between interpolate (a simple knob against
forgetting). ``decoder_scale`` weighs the decoder's adapters apart from the rest: for an
adapter on both halves, the decoder's part was measured to cost real speech while the
encoder's part did not (the demo's guard therefore scales the decoder's part alone).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from whisper_finetune.staging import holds_output_lock

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "whisper_finetune.json"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


def read_adapter_config(adapter_dir: str | os.PathLike) -> dict:
    """The adapter's ``adapter_config.json``.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it is not a peft adapter, or names no base model.
    """
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise FileNotFoundError(f"adapter folder not found: {adapter_dir}")
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        hint = (
            " (it is a full model: no merge needed)"
            if (adapter_dir / "config.json").is_file()
            else ""
        )
        raise ValueError(
            f"{adapter_dir} has no adapter_config.json: not a LoRA/AdaLoRA adapter{hint}"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a JSON object")
    _check_adapter_weights(adapter_dir)
    if not config.get("base_model_name_or_path"):
        raise ValueError(f"{path} does not name its base model (base_model_name_or_path)")
    return config


def _check_adapter_weights(adapter_dir: Path) -> None:
    """The adapter's weights are there and whole (issue 27.12): peft would otherwise take
    the folder for a hub repo id, or fail deep in safetensors."""
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        if (adapter_dir / "adapter_model.bin").is_file():
            return
        raise ValueError(
            f"{adapter_dir} holds no adapter weights (adapter_model.safetensors): the "
            "run that wrote it did not finish saving it; use another checkpoint"
        )
    size = weights.stat().st_size
    try:
        with weights.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 0 < n <= size - 8 else None
        end = max(
            (t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0
        )
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        header = None
    if header is None or size < 8 + n + end:
        raise ValueError(
            f"{weights} is truncated or not a safetensors file ({size} bytes); use another "
            "checkpoint of the run"
        )


def _check_destination(
    output_dir: Path, adapter_dir: Path, overwrite: bool, base_path: str | None = None
) -> None:
    from whisper_finetune.staging import check_replaceable

    if output_dir.resolve() == adapter_dir.resolve() or adapter_dir.resolve().is_relative_to(
        output_dir.resolve()
    ):
        raise ValueError(f"--output_dir {output_dir} would overwrite the adapter itself")
    # the base model too, and never a folder holding anything but an earlier merge
    check_replaceable(output_dir, kind="model", sources=(base_path,), what="--output_dir")
    if output_dir.exists():
        if not output_dir.is_dir():
            raise ValueError(f"--output_dir {output_dir} exists and is not a folder")
        if any(output_dir.iterdir()) and not overwrite:
            raise ValueError(
                f"--output_dir {output_dir} is not empty; pass --overwrite to replace it"
            )


def _load_merged(
    adapter_dir: Path, base_path: str, scale: float, config: dict, decoder_scale: float
):
    import torch
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(base_path, dtype=torch.float32)
    with warnings.catch_warnings():
        # AdaLoRA's rank_pattern (pruning masks) is not LoRA's per-module rank_pattern;
        # peft checks it as the latter and warns, then resizes the modules correctly
        warnings.filterwarnings("ignore", message="The following rank_pattern keys did not match")
        try:
            peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
        except RuntimeError as exc:  # one line per tensor that does not fit: summarise
            mismatches = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
            if not mismatches:
                raise
            raise ValueError(
                f"{adapter_dir}: the adapter's weights do not fit the base model {base_path} "
                f"({len(mismatches)} tensors of other shapes, e.g. {mismatches[0]}): was it "
                "trained on another base model? (adapter_config.json, base_model_name_or_path)"
            ) from None
    if scale != 1.0 or decoder_scale != 1.0:
        if config.get("modules_to_save"):
            raise ValueError(
                "--scale or --decoder_scale != 1 is not supported for adapters with modules_to_save"
            )
        # AdaLoRA layers are LoRA layers too
        layers = [(n, m) for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)]
        if not layers:
            raise ValueError(f"--scale: {adapter_dir} holds no LoRA-type layers to scale")
        for name, layer in layers:
            # delta = scale * (B @ A) * alpha / r; 0 merges exactly nothing
            layer.scale_layer(decoder_scale if ".decoder." in f".{name}." else scale)
    merged = peft_model.merge_and_unload()
    merged.config.use_cache = True  # training switched it off
    return merged


@holds_output_lock("output_dir")  # one writer at a time (issue 27.4)
def merge_adapter(
    lora_model: str | os.PathLike,
    output_dir: str | os.PathLike,
    scale: float = 1.0,
    overwrite: bool = False,
    decoder_scale: float | None = None,
    language: str | None = None,
    task: str | None = None,
    alignment_data: str | None = None,
    alignment_heads: bool = True,
) -> Path:
    """Merge an adapter into its base model and save a standalone model folder.

    Args:
        lora_model: the adapter folder (``final/`` or a ``checkpoint-N/`` of a run).
        output_dir: destination folder; must be missing or empty unless ``overwrite``.
        scale: adapter weight in [0, 1]: ``W = W_base + scale * delta``.
        overwrite: replace a non-empty ``output_dir`` that holds an earlier merge (a
            folder with foreign files, or one containing the adapter or the base model,
            is refused: see :func:`whisper_finetune.staging.check_replaceable`).
        decoder_scale: weight in [0, 1] of the decoder's adapters (default: ``scale``);
            ``scale`` then weighs the rest (the encoder's).
        language, task: written into ``generation_config.json`` (default: the run's
            ``finetune_config.json`` beside or above the adapter), so the model transcribes
            its language without being told; the model card ``README.md`` says the same.
        alignment_data: a manifest with timed ``sentences`` to choose the word-timestamp
            alignment heads on (:mod:`whisper_finetune.evaluation.heads`); default: the
            run's test, else training, manifest when it has timed records.
        alignment_heads: False skips choosing alignment heads.

    Returns:
        The output folder.

    Raises:
        FileNotFoundError: when the adapter folder does not exist.
        ValueError: for a folder that is not an adapter, a bad scale, or a non-empty
            destination without ``overwrite``.
    """
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

    from whisper_finetune.models.resolve import resolve_model
    from whisper_finetune.staging import staged_dir
    from whisper_finetune.version import __version__

    adapter_dir, output_dir = Path(lora_model), Path(output_dir)
    decoder_scale = scale if decoder_scale is None else decoder_scale
    for flag, value in (("--scale", scale), ("--decoder_scale", decoder_scale)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{flag} must be in [0, 1], got {value}")
    config = read_adapter_config(adapter_dir)
    base_name = config["base_model_name_or_path"]
    base_path = resolve_model(base_name)
    _check_destination(output_dir, adapter_dir, overwrite, base_path)
    logger.info(
        "merging %s (%s) into %s, scale %g (decoder %g)",
        adapter_dir,
        config.get("peft_type"),
        base_name,
        scale,
        decoder_scale,
    )

    with staged_dir(output_dir) as tmp:
        merged = _load_merged(adapter_dir, base_path, float(scale), config, float(decoder_scale))
        merged.save_pretrained(tmp)
        # tokenizer and mel settings: the adapter's copies when the run saved them
        has_tokenizer = any((adapter_dir / f).is_file() for f in _TOKENIZER_FILES)
        WhisperTokenizer.from_pretrained(
            adapter_dir if has_tokenizer else base_path
        ).save_pretrained(tmp)
        has_features = (adapter_dir / "preprocessor_config.json").is_file()
        WhisperFeatureExtractor.from_pretrained(
            adapter_dir if has_features else base_path
        ).save_pretrained(tmp)
        provenance = {
            "kind": "model",
            "base_model": base_name,
            "adapter": str(adapter_dir.resolve()),
            "peft_type": config.get("peft_type"),
            "scale": float(scale),
            "decoder_scale": float(decoder_scale),
            "whisper_finetune_version": __version__,
        }
        facts = _describe(
            tmp,
            output_dir.name,
            adapter_dir,
            base_name,
            config,
            language,
            task,
            provenance,
            alignment_data if alignment_heads else False,
        )
        provenance.update(language=facts.language, task=facts.task)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    logger.info("merged model written to %s", output_dir)
    return output_dir


def _describe(
    tmp: Path,
    name: str,
    adapter_dir: Path,
    base_name: str,
    config: dict,
    language: str | None,
    task: str | None,
    provenance: dict,
    alignment_data: str | bool | None,
):
    """Write the run's language and task into ``generation_config.json`` and the model
    card ``README.md`` (flags win over the run's ``finetune_config.json``)."""
    from whisper_finetune.models.modelcard import CardInfo, read_facts, write_card, write_facts
    from whisper_finetune.training.runinfo import card_details, read_run

    run = read_run(adapter_dir)
    language = language or run.config.get("language")
    task = task or run.config.get("task")
    facts = write_facts(tmp, language=language, task=task)
    if facts.language is None:
        logger.warning("%s: language unknown (no run config, no --language): none set", name)
    data = _alignment_data(alignment_data, run.config)
    if data is not None:
        from whisper_finetune.evaluation.heads import update_alignment_heads

        choice = update_alignment_heads(tmp, data, language=facts.language, max_records=8)
        provenance["alignment_heads"] = choice.to_json() | {"data": str(data)}
        facts = read_facts(tmp)
    cfg = run.config
    info = CardInfo(
        base_model=base_name,
        language=facts.language,
        task=facts.task,
        method=cfg.get("method") or config.get("peft_type"),
        train_data=tuple(d for d in str(cfg.get("train_data") or "").split(",") if d),
        test_data=cfg.get("test_data"),
        metric=run.metric,
        eval_value=run.eval_value,
        guard_data=cfg.get("guard_data"),
        guard_value=run.guard_value,
        guard_baseline=run.guard_baseline,
        guard_max_increase=cfg.get("guard_max_increase"),
        step=run.step,
        scale=provenance["scale"],
        decoder_scale=provenance["decoder_scale"],
        alignment_heads=facts.alignment_heads,
        details=card_details(cfg),
    )
    write_card(tmp, info, name=name)
    return facts


def _alignment_data(flag: str | bool | None, run_config: dict) -> str | None:
    """The manifest to choose alignment heads on: the flag, else the run's test or training
    manifest when it has timed records (False: none)."""
    if flag is False:
        return None
    if flag is not None:
        if not Path(flag).is_file():
            raise FileNotFoundError(f"--alignment_data: manifest not found: {flag}")
        return flag
    from whisper_finetune.evaluation.heads import timed_records

    for key in ("test_data", "train_data"):
        path = run_config.get(key)
        if not path or "," in str(path):
            continue
        if not Path(path).is_file():
            logger.warning("alignment heads: the run's %s %s is gone; not chosen", key, path)
            continue
        if len(timed_records(path, 2)) >= 2:
            logger.info("alignment heads: choosing them on the run's %s %s", key, path)
            return path
    return None
