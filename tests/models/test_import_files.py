"""The imported whisper-base's files match openai/whisper-base's (issue 9 item 13)."""

from __future__ import annotations

import json

import pytest


def _check_files(folder, n_vocab: int) -> None:
    from transformers import WhisperTokenizer

    config = json.loads((folder / "config.json").read_text())
    # openai/whisper-base: [220, 50257]; WhisperConfig's default [220, 50256] is English-only
    assert config["begin_suppress_tokens"] == [220, 50257]
    assert config["suppress_tokens"] and 50256 not in config["begin_suppress_tokens"]
    generation = json.loads((folder / "generation_config.json").read_text())
    assert config["suppress_tokens"] == generation["suppress_tokens"]
    tokenizer = WhisperTokenizer.from_pretrained(folder)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id == 50257
    assert tokenizer.model_max_length == 448
    assert len(tokenizer) == n_vocab


@pytest.mark.slow
def test_imported_whisper_base_matches_openai_files(tmp_path):
    from whisper_finetune.models.ct2format import ct2_to_transformers
    from whisper_finetune.models.embedded import embedded_ct2

    _check_files(ct2_to_transformers(embedded_ct2("whisper-base"), tmp_path / "base"), 51865)


def test_tiny_models_carry_the_same_lists(tiny_model_dir):
    _check_files(tiny_model_dir, 51865)
