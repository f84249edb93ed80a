"""A tiny random Whisper with the real tokenizer, for tests and smoke runs.

``v3=True`` gives the shape of large-v3 and turbo: 128 mel bins, 100 languages
(``<|yue|>`` added after ``<|su|>``), ``<|nospeech|>`` where earlier models have
``<|nocaptions|>``, a 51,866-token vocabulary, and every special and timestamp token id
from ``<|translate|>`` on shifted by one (``<|notimestamps|>`` is 50364, ``<|0.00|>`` 50365).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from whisper_finetune.models.embedded import embedded_transformers
from whisper_finetune.staging import staged_dir

V3_SHIFT_FROM = 50358  # <|translate|> in whisper-base; <|yue|> takes this id in v3


def _v3_id(i: int) -> int:
    return i + 1 if i >= V3_SHIFT_FROM else i


def _v3_tokenizer(folder: Path) -> None:
    """Rewrite a saved whisper-base tokenizer into large-v3's special tokens, in place."""
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    added = []
    for token in data["added_tokens"]:
        token = dict(token, id=_v3_id(token["id"]))
        if token["content"] == "<|nocaptions|>":
            token["content"] = "<|nospeech|>"
        added.append(token)
        if token["content"] == "<|su|>":
            added.append(dict(token, id=V3_SHIFT_FROM, content="<|yue|>"))
    data["added_tokens"] = sorted(added, key=lambda t: t["id"])
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    specials = []
    for name in config.get("extra_special_tokens", []):
        specials.append("<|nospeech|>" if name == "<|nocaptions|>" else name)
        if name == "<|su|>":
            specials.append("<|yue|>")
    config["extra_special_tokens"] = specials
    config.pop("added_tokens_decoder", None)
    path.write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")


def _v3_generation(generation):
    """whisper-base's generation config with large-v3's token ids."""
    generation.lang_to_id = {k: _v3_id(v) for k, v in generation.lang_to_id.items()}
    generation.lang_to_id["<|yue|>"] = V3_SHIFT_FROM
    generation.task_to_id = {k: _v3_id(v) for k, v in generation.task_to_id.items()}
    generation.no_timestamps_token_id = _v3_id(generation.no_timestamps_token_id)
    generation.prev_sot_token_id = _v3_id(generation.prev_sot_token_id)
    generation.suppress_tokens = [_v3_id(i) for i in generation.suppress_tokens]
    return generation


def build_tiny_whisper(
    dst: str | os.PathLike,
    *,
    seed: int = 0,
    d_model: int = 64,
    layers: int = 2,
    v3: bool = False,
    ffn_dim: int | None = None,
) -> Path:
    """A tiny, randomly initialised Whisper with the real multilingual tokenizer.

    It has whisper-base's vocabulary, special tokens, generation config and mel settings
    (with ``v3``: large-v3's, see the module docstring), so every code path (language
    tokens, timestamps, CTranslate2 conversion) behaves as with a real model, in a
    fraction of the time. Used by the tests and for smoke runs.
    ``ffn_dim`` defaults to ``2 * d_model``; whisper.cpp needs Whisper's ``4 * d_model``.
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    base = embedded_transformers("whisper-base")
    base_config = WhisperConfig.from_pretrained(base)
    generation = GenerationConfig.from_pretrained(base)
    if v3:
        generation = _v3_generation(generation)
    generation.alignment_heads = [[0, 0], [layers - 1, 1]]
    config = WhisperConfig(
        vocab_size=base_config.vocab_size + (1 if v3 else 0),
        num_mel_bins=128 if v3 else base_config.num_mel_bins,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=ffn_dim or d_model * 2,
        decoder_ffn_dim=ffn_dim or d_model * 2,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=base_config.decoder_start_token_id,
        pad_token_id=base_config.pad_token_id,
        bos_token_id=base_config.bos_token_id,
        eos_token_id=base_config.eos_token_id,
        # the real lists, not WhisperConfig's English-only default [220, 50256]
        begin_suppress_tokens=list(generation.begin_suppress_tokens),
        suppress_tokens=list(generation.suppress_tokens),
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = generation
    with staged_dir(dst) as tmp:
        model.save_pretrained(tmp)
        tokenizer = WhisperTokenizer.from_pretrained(base)
        tokenizer.pad_token = "<|endoftext|>"
        tokenizer.model_max_length = 448
        tokenizer.save_pretrained(tmp)
        if v3:
            _v3_tokenizer(tmp)
            extractor = WhisperFeatureExtractor(feature_size=128)
            extractor.to_json_file(str(tmp / "preprocessor_config.json"))
        else:
            shutil.copy2(base / "preprocessor_config.json", tmp / "preprocessor_config.json")
    return Path(dst)
