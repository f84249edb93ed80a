"""Prompt-conditioned training: prompt tokens in front of the decoder input with no loss,
within the 448-token limit; previous slices and phrase files as sources (tiny model)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from finetune_data import small_config, write_manifest

from whisper_finetune.data.collator import WhisperCollator
from whisper_finetune.data.manifest import Record, read_manifest
from whisper_finetune.training.prompts import (
    IGNORE_INDEX,
    MAX_PROMPT_TOKENS,
    PromptCollator,
    PromptedDataset,
    PromptSource,
    attach_prompts,
    prompt_ids,
    read_phrases,
    scan_prompts,
)

SOT, ZH, TRANSCRIBE, NTS, EOT = 50258, 50260, 50359, 50363, 50257


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import WhisperTokenizer

    return WhisperTokenizer.from_pretrained(tiny_model_dir)


def test_prompt_is_masked_and_shifted_in_front_of_sot(tokenizer):
    prev = tokenizer.convert_tokens_to_ids("<|startofprev|>")
    label = [SOT, ZH, TRANSCRIBE, NTS, 11, 12, EOT]
    plain = {"input_features": np.zeros((80, 3000), np.float32), "labels": label}
    prompted = {**plain, "prompt_ids": [prev, 901, 902]}
    batch = PromptCollator(WhisperCollator(SOT))([prompted, plain])
    assert batch["decoder_input_ids"][0].tolist() == [
        prev,
        901,
        902,
        SOT,
        ZH,
        TRANSCRIBE,
        NTS,
        11,
        12,
    ]
    assert batch["labels"][0].tolist() == [-100, -100, -100, ZH, TRANSCRIBE, NTS, 11, 12, EOT]
    # the row without a prompt: what the model's own shift of its labels would give
    n = len(label) - 1
    assert batch["decoder_input_ids"][1, :n].tolist() == label[:-1]
    assert batch["labels"][1].tolist() == label[1:] + [IGNORE_INDEX] * 3
    # a batch without prompts is exactly the plain collator's
    alone = PromptCollator(WhisperCollator(SOT))([plain])
    assert set(alone) == {"input_features", "labels"}
    assert torch.equal(alone["labels"], WhisperCollator(SOT)([plain])["labels"])


def test_no_loss_on_the_prompt(tiny_model_dir, tokenizer, one_torch_thread):
    """The prompted row's loss is the cross-entropy of the label tokens only."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    prev = tokenizer.convert_tokens_to_ids("<|startofprev|>")
    sample = {
        "input_features": np.random.default_rng(0).standard_normal((80, 3000)).astype(np.float32),
        "labels": [SOT, ZH, TRANSCRIBE, NTS, 11, 12, EOT],
        "prompt_ids": [prev, 901, 902, 903],
    }
    batch = PromptCollator(WhisperCollator(SOT))([sample])
    with torch.no_grad():
        out = model(**batch)
    logits = out.logits[0, 4:]  # from the SOT position on
    manual = torch.nn.functional.cross_entropy(logits, torch.tensor(sample["labels"][1:]))
    assert out.loss.item() == pytest.approx(manual.item(), rel=1e-5)


def test_prompt_keeps_its_last_tokens_within_the_limits(tokenizer):
    prev = tokenizer.convert_tokens_to_ids("<|startofprev|>")
    text = "".join(f"第{i}句。" for i in range(400))
    ids = prompt_ids(tokenizer, text, label_length=20)
    full = tokenizer.encode(" " + text, add_special_tokens=False)
    assert ids[0] == prev and ids[1:] == full[-MAX_PROMPT_TOKENS:]
    ids = prompt_ids(tokenizer, text, label_length=440)
    assert len(ids) - 1 == 8 and len(ids) + 440 - 1 == 448  # decoder input of 448 tokens
    assert prompt_ids(tokenizer, text, label_length=448) is None


def test_previous_slice_of_the_same_recording_is_the_prompt():
    records = [
        Record("a.wav", "第二句", start_time=3.0, end_time=6.0),
        Record("a.wav", "第一句", start_time=0.0, end_time=2.8),
        Record("b.wav", "别的录音", start_time=6.5, end_time=9.0),
        Record("a.wav", "很远的一句", start_time=30.0, end_time=33.0),
        Record("c.wav", "整段"),
    ]
    assert scan_prompts(records)[1] == {0: "第一句"}
    source = PromptSource(records, ["术语甲", "术语乙"])
    rng = np.random.default_rng(0)
    drawn = {source(0, rng) for _ in range(40)}
    assert "第一句" in drawn and any("术语" in (t or "") for t in drawn)
    assert all(t and set(t) <= set("术语甲乙，") for t in (source(4, rng) for _ in range(10)))
    assert PromptSource(records)(4, rng) is None


class Data(list):
    """A dataset stand-in: samples by index, its records, an epoch."""

    epoch = 0
    records: list = []


def test_a_records_own_prompt_comes_first(tokenizer):
    records = [
        Record("a.wav", "第一句", start_time=0.0, end_time=2.8),
        Record("a.wav", "第二句", start_time=3.0, end_time=6.0, prompt="会议记录：张三发言"),
        Record("a.wav", "第三句", start_time=6.2, end_time=8.0),
        Record("c.wav", "整段", prompt=" 术语丙 "),
    ]
    own, previous = scan_prompts(records)
    assert own == {1: "会议记录：张三发言", 3: "术语丙"}
    assert previous == {1: "第一句", 2: "第二句"}
    source = PromptSource(records, ["术语甲"])
    rng = np.random.default_rng(0)
    # the own prompt wins over both the previous slice and the phrase file, every time
    assert {source(1, rng) for _ in range(30)} == {"会议记录：张三发言"}
    assert {source(3, rng) for _ in range(30)} == {"术语丙"}
    assert {source(2, rng) for _ in range(40)} == {"第二句", "术语甲"}  # as before
    # the seeded draws of the other records are exactly those of a manifest without prompts
    label = [SOT, ZH, TRANSCRIBE, NTS, 11, 12, EOT]
    samples = Data({"labels": label} for _ in records)
    without = [dataclasses.replace(r, prompt=None) for r in records]
    for seed in range(5):
        mixed = PromptedDataset(samples, source, tokenizer, ratio=0.5, seed=seed)
        plain = PromptedDataset(
            samples, PromptSource(without, ["术语甲"]), tokenizer, ratio=0.5, seed=seed
        )
        for i in (0, 2):
            assert mixed[i].get("prompt_ids") == plain[i].get("prompt_ids")
        # whether a record is prompted is the same --prompt_ratio draw; only the text differs
        for i in (1, 3):
            assert ("prompt_ids" in mixed[i]) == ("prompt_ids" in plain[i])


def test_a_manifest_prompt_reaches_the_decoder_input_with_no_loss(tmp_path, tokenizer):
    path = tmp_path / "train.jsonl"
    lines = [
        {"audio": {"path": "a.wav"}, "sentence": "你好", "prompt": "会议记录：张三发言"},
        {"audio": {"path": "b.wav"}, "sentence": "再见"},
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), "utf-8")
    label = [SOT, ZH, TRANSCRIBE, NTS, 11, 12, EOT]
    features = np.zeros((80, 3000), np.float32)
    data = Data({"input_features": features, "labels": label} for _ in lines)
    data.records = read_manifest(path)
    cfg = SimpleNamespace(prompt_ratio=1.0, prompt_file=None, train_data=str(path), seed=0)
    # neither slices nor a phrase file: the records' own prompts are enough
    prompted = attach_prompts(cfg, data, tokenizer)
    first, second = prompted[0], prompted[1]
    assert "prompt_ids" not in second  # no prompt of its own and nothing else to draw
    want = [
        tokenizer.convert_tokens_to_ids("<|startofprev|>"),
        *tokenizer.encode(" 会议记录：张三发言", add_special_tokens=False),
    ]
    assert first["prompt_ids"] == want
    batch = PromptCollator(WhisperCollator(SOT))([first, second])
    n = len(want)
    assert batch["decoder_input_ids"][0].tolist() == want + label[:-1]
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * n + label[1:]
    m = len(label) - 1
    assert batch["decoder_input_ids"][1, :m].tolist() == label[:-1]
    assert batch["labels"][1].tolist() == label[1:] + [IGNORE_INDEX] * n
    # without the prompt field the same manifest is refused, naming what is missing
    data.records = [dataclasses.replace(r, prompt=None) for r in data.records]
    with pytest.raises(ValueError, match="no record with a 'prompt' field.*--prompt_file"):
        attach_prompts(cfg, data, tokenizer)


def test_prompt_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_phrases(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt holds no phrase"):
        read_phrases(empty)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="bad.txt: not UTF-8"):
        read_phrases(bad)


def test_ratio_draws_a_share_and_spares_no_speech(tokenizer):
    samples = [{"labels": [SOT, ZH, TRANSCRIBE, NTS, 11, EOT]}] * 200 + [
        {"labels": [SOT, 50362, EOT]}
    ]

    source = PromptSource([Record("x.wav", "x")] * 201, ["术语"])
    data = PromptedDataset(Data(samples), source, tokenizer, ratio=0.3, seed=0)
    got = [("prompt_ids" in data[i]) for i in range(201)]
    assert 0.2 < np.mean(got[:200]) < 0.4 and not got[200]
    assert got == [("prompt_ids" in data[i]) for i in range(201)]  # deterministic
    with pytest.raises(ValueError, match="prompt_ratio"):
        PromptedDataset(Data(samples), source, tokenizer, ratio=1.5, seed=0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_finetune_with_prompts_runs(tiny_model_dir, tmp_path, one_torch_thread):
    from whisper_finetune.training.train import finetune

    train = write_manifest(tmp_path / "data")
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("天气\n学校\n", encoding="utf-8")
    cfg = small_config(
        tiny_model_dir,
        train,
        tmp_path / "run",
        max_steps=1,
        prompt_ratio=1.0,
        prompt_file=str(phrases),
    )
    result = finetune(cfg)
    assert result.global_step == 1 and np.isfinite(result.train_loss)
    saved = json.loads((tmp_path / "run" / "finetune_config.json").read_text())
    assert saved["prompt_ratio"] == 1.0
    with pytest.raises(ValueError, match="no consecutive slices.*--prompt_file"):
        finetune(small_config(tiny_model_dir, train, tmp_path / "run2", prompt_ratio=0.5))
