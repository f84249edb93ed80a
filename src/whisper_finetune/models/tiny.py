"""A tiny random Whisper with the real tokenizer, for tests and smoke runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from whisper_finetune.models.embedded import embedded_transformers
from whisper_finetune.staging import staged_dir


def build_tiny_whisper(
    dst: str | os.PathLike,
    *,
    seed: int = 0,
    d_model: int = 64,
    layers: int = 2,
    ffn_dim: int | None = None,
) -> Path:
    """A tiny, randomly initialised Whisper with the real multilingual tokenizer.

    It has whisper-base's vocabulary, special tokens, generation config and mel settings,
    so every code path (language tokens, timestamps, CTranslate2 conversion) behaves as
    with a real model, in a fraction of the time. Used by the tests and for smoke runs.
    ``ffn_dim`` defaults to ``2 * d_model``; whisper.cpp needs Whisper's ``4 * d_model``.
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
        encoder_ffn_dim=ffn_dim or d_model * 2,
        decoder_ffn_dim=ffn_dim or d_model * 2,
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
