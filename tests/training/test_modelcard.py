"""A merged model says what it is: language and task in generation_config.json (kept by
both conversions), and a Hugging Face model card whose front matter parses as YAML."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from whisper_finetune.models.modelcard import CardInfo, card_text, read_facts
from whisper_finetune.training.merge import PROVENANCE_FILE, merge_adapter

pytestmark = [
    pytest.mark.filterwarnings("ignore:Could not find a config file in"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A training run folder as ``finetune`` leaves it, with a random LoRA in ``final/``."""
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration

    from whisper_finetune.training.adapters import stored_base_name

    torch.manual_seed(0)
    base = WhisperForConditionalGeneration.from_pretrained(tiny_model_dir)
    model = get_peft_model(
        base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    model.peft_config["default"].base_model_name_or_path = stored_base_name(str(tiny_model_dir))
    run = tmp_path_factory.mktemp("run")
    model.save_pretrained(run / "final")
    config = {
        "base_model": str(tiny_model_dir),
        "language": "Chinese",
        "task": "transcribe",
        "method": "lora",
        "lora_r": 2,
        "train_data": "data/train.jsonl",
        "test_data": "data/test.jsonl",
        "guard_data": "data/real.jsonl",
        "guard_max_increase": 0.02,
        "metric": "cer",
    }
    (run / "finetune_config.json").write_text(json.dumps(config))
    state = {
        "global_step": 6,
        "best_global_step": 4,
        "log_history": [
            {"step": 2, "eval_cer": 0.5, "eval_guard_cer": 0.2},
            {"step": 4, "eval_cer": 0.25, "eval_guard_cer": 0.21},
            {"step": 6, "eval_cer": 0.3, "eval_guard_cer": 0.3},
        ],
    }
    (run / "trainer_state.json").write_text(json.dumps(state))
    (run / "guard_baseline.json").write_text(json.dumps({"value": 0.2}))
    return run


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n"), card[:40]
    return yaml.safe_load(card.split("---\n")[1])


def test_merge_writes_language_task_and_card(run_dir, tmp_path):
    merged = merge_adapter(run_dir / "final", tmp_path / "merged")
    gen = json.loads((merged / "generation_config.json").read_text())
    assert (gen["language"], gen["task"]) == ("zh", "transcribe")
    assert json.loads((merged / PROVENANCE_FILE).read_text())["language"] == "zh"
    card = (merged / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(card)
    assert meta["language"] == ["zh"]
    assert meta["pipeline_tag"] == "automatic-speech-recognition"
    assert {"whisper", "lora"} <= set(meta["tags"])
    assert meta["datasets"] == ["train.jsonl"]
    results = meta["model-index"][0]["results"]
    # the best step's figures (final/ holds the best checkpoint), not the last step's
    assert [r["metrics"][0]["value"] for r in results] == [0.25, 0.21]
    assert [r["dataset"]["name"] for r in results] == ["test.jsonl", "real.jsonl"]
    assert "limit +0.02: kept" in card  # 0.21 <= 0.2 + 0.02
    assert "pipeline(" in card and "faster_whisper" in card and "whisper-cli" in card


def test_flags_win_and_a_checkpoint_reports_its_own_step(run_dir, tmp_path):
    shutil.copytree(run_dir / "final", run_dir / "checkpoint-6", dirs_exist_ok=True)
    merged = merge_adapter(run_dir / "checkpoint-6", tmp_path / "m", language="en")
    assert read_facts(merged).language == "en"
    card = (merged / "README.md").read_text(encoding="utf-8")
    assert [r["metrics"][0]["value"] for r in _front_matter(card)["model-index"][0]["results"]] == [
        0.3,
        0.3,
    ]
    assert "NOT kept" in card  # 0.3 > 0.2 + 0.02


def test_unknown_language_is_refused_with_its_name(run_dir, tmp_path):
    with pytest.raises(ValueError, match="klingon"):
        merge_adapter(run_dir / "final", tmp_path / "m", language="klingon")
    assert not (tmp_path / "m").exists()


def test_card_without_a_run_still_parses():
    meta = _front_matter(card_text(CardInfo(base_model="embedded:whisper-base"), "m"))
    assert meta["base_model"] == "openai/whisper-base" and meta["license"] == "apache-2.0"
    assert "language" not in meta and "model-index" not in meta


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pipeline_picks_up_the_language_untold(run_dir, tmp_path):
    """``pipeline(model=merged)`` decodes as Mandarin; the same model without the field
    detects some other language (the tiny model's weights are random)."""
    from transformers import pipeline

    merged = merge_adapter(run_dir / "final", tmp_path / "merged")

    def language(model_dir) -> str:
        asr = pipeline("automatic-speech-recognition", model=str(model_dir))
        out = asr(
            {"raw": np.zeros(16000, np.float32), "sampling_rate": 16000},  # the pipeline pops it
            return_language=True,
            return_timestamps=True,
            generate_kwargs={"max_new_tokens": 2},
        )
        return out["chunks"][0]["language"]

    assert language(merged) == "chinese"
    untold = tmp_path / "untold"
    shutil.copytree(merged, untold)
    gen = json.loads((untold / "generation_config.json").read_text())
    gen.pop("language")
    (untold / "generation_config.json").write_text(json.dumps(gen))
    assert language(untold) != "chinese"


def test_conversions_keep_language_task_and_heads(run_dir, tmp_path):
    pytest.importorskip("ctranslate2")
    from whisper_finetune.models.convert import convert_to_ct2
    from whisper_finetune.models.ggml import convert_to_ggml
    from whisper_finetune.models.modelcard import write_facts

    merged = merge_adapter(run_dir / "final", tmp_path / "merged")
    write_facts(merged, alignment_heads=[(1, 0), (0, 1)])
    ct2 = convert_to_ct2(merged, tmp_path / "ct2", quantization="float32")
    assert json.loads((ct2 / "config.json").read_text())["alignment_heads"] == [[1, 0], [0, 1]]
    assert read_facts(ct2).language == "zh" and (ct2 / "README.md").is_file()
    # GGML needs whisper's 4 x d_model feed-forward, which the shared tiny model lacks
    from whisper_finetune.models.tiny import build_tiny_whisper

    cpp = build_tiny_whisper(tmp_path / "tiny-ffn4", ffn_dim=256)
    write_facts(cpp, language="zh", task="transcribe", alignment_heads=[(1, 0), (0, 1)])
    ggml = convert_to_ggml(cpp, tmp_path / "ggml", quantization="f32", verify=False)
    meta = json.loads((ggml.parent / "whisper_finetune.json").read_text())
    assert (meta["language"], meta["task"], meta["alignment_heads"]) == (
        "zh",
        "transcribe",
        [[1, 0], [0, 1]],
    )
    with pytest.raises(ValueError, match="outside"):
        write_facts(merged, alignment_heads=[(9, 0)])


def test_merge_chooses_alignment_heads_on_timed_data(run_dir, tmp_path):
    """--alignment_data: the heads are chosen on it and recorded; alignment_heads=False
    skips it (also from the command line), and a manifest that is not there is named."""
    from finetune_data import write_manifest

    timed = write_manifest(tmp_path / "timed")
    merged = merge_adapter(run_dir / "final", tmp_path / "m", alignment_data=str(timed))
    record = json.loads((merged / PROVENANCE_FILE).read_text())["alignment_heads"]
    assert record["data"] == str(timed) and record["records_check"] >= 1
    heads = read_facts(merged).alignment_heads
    assert (list(map(list, heads)) == record["heads"]) == record["written"]
    from whisper_finetune.cli import main

    skipped = tmp_path / "s"
    flags = [f"--lora_model={run_dir / 'final'}", f"--output_dir={skipped}"]
    assert main(["merge", *flags, f"--alignment_data={timed}", "--alignment_heads=false"]) == 0
    assert "alignment_heads" not in json.loads((skipped / PROVENANCE_FILE).read_text())
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        merge_adapter(
            run_dir / "final", tmp_path / "x", alignment_data=str(tmp_path / "missing.jsonl")
        )
