"""``--config FILE`` on every subcommand: shipped examples parse, flags win, unknown keys
are named, and a run's saved ``finetune_config.json`` repeats the run's config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from whisper_finetune.cli import build_parser, main
from whisper_finetune.cli._args import apply_config, dataclass_from_args
from whisper_finetune.training.config import FinetuneConfig

CONFIGS = sorted(
    (Path(__file__).resolve().parents[2] / "src" / "whisper_finetune" / "configs").glob("*.yaml")
)
FINETUNE_CONFIGS = [p for p in CONFIGS if not p.name.startswith("accelerate")]


def _finetune_config(argv: list[str]) -> FinetuneConfig:
    argv = ["finetune", *argv]
    args = apply_config(build_parser().parse_args(argv), argv)
    return dataclass_from_args(FinetuneConfig, args)


def test_examples_ship_with_the_package():
    names = {p.name for p in CONFIGS}
    assert {"lora-24gb-gpu.yaml", "adalora-gpu.yaml", "full-gpu.yaml", "cpu.yaml"} <= names


@pytest.mark.parametrize("path", FINETUNE_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_example_parses_and_resolves(path):
    cfg = _finetune_config([f"--config={path}"])
    on_gpu = "gpu" in path.name
    resolved = cfg.resolved(cuda_available=on_gpu, bf16_supported=on_gpu)
    assert resolved.train_data and resolved.output_dir
    assert resolved.device == ("cuda" if on_gpu else "cpu")
    method = {"adalora": "adalora", "full": "full"}.get(path.name.split("-")[0], "lora")
    assert resolved.method == method


def test_nested_sections_and_flags_override_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "data:\n  train_data: a.jsonl\n  language: en\nmethod:\n  lora_r: 8\n"
        "target_modules: [q_proj, v_proj]\nreport_to: none\n",
        encoding="utf-8",
    )
    cfg = _finetune_config([f"--config={path}", "--lora_r=16"])
    assert (cfg.train_data, cfg.language, cfg.lora_r) == ("a.jsonl", "en", 16)
    assert cfg.target_modules == ("q_proj", "v_proj") and cfg.report_to == ("none",)
    # the original scripts' spellings are accepted as keys too
    path.write_text("train_data: a.jsonl\nmax_audio_len: 12\n", encoding="utf-8")
    assert _finetune_config([f"--config={path}"]).max_duration == 12


@pytest.mark.parametrize(
    "text, message",
    [
        ("train_data: a.jsonl\nlearning_rat: 0.1\n", "unknown option 'learning_rat'"),
        ("lora_r: many\n", "lora_r"),
        ("method: sgd\n", "method='sgd' is not one of"),
        ("- a\n- b\n", "expected a mapping"),
        ("a: [1,\n", "not valid YAML"),
        ("data: {lora_r: 4}\nlora_r: 8\n", "'lora_r' is given twice"),
    ],
)
def test_bad_config_files_are_named_errors(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["finetune", f"--config={path}"]) == 1
    err = capsys.readouterr().err
    assert message in err and str(path) in err


def test_saved_finetune_config_repeats_the_run(tmp_path):
    first = FinetuneConfig(
        base_model="embedded:whisper-base",
        train_data="train.jsonl",
        test_data="test.jsonl",
        output_dir=str(tmp_path / "run"),
        target_modules=("q_proj", "v_proj"),
        learning_rate=3e-4,
        lora_layers="encoder",
        report_to=("tensorboard",),
    ).resolved(cuda_available=False, bf16_supported=False)
    saved = first.save(
        tmp_path / "run" / "finetune_config.json",
        provenance={"resolved_base_model": "/x", "world_size": 1, "version": "0"},
    )
    again = _finetune_config([f"--config={saved}"]).resolved(
        cuda_available=False, bf16_supported=False
    )
    assert again == first
    # and a flag still overrides the saved value
    changed = _finetune_config([f"--config={saved}", "--learning_rate=1e-4"])
    assert changed.learning_rate == 1e-4
    assert (
        dataclasses.replace(changed, learning_rate=first.learning_rate).resolved(
            cuda_available=False, bf16_supported=False
        )
        == first
    )


def test_other_subcommands_take_config_files(tmp_path):
    path = tmp_path / "infer.json"
    path.write_text(
        json.dumps({"audio_path": "a.wav", "beam_size": 3, "language": "zh"}), encoding="utf-8"
    )
    argv = ["infer", f"--config={path}", "--beam_size=2"]
    args = apply_config(build_parser().parse_args(argv), argv)
    assert (args.audio_path, args.beam_size, args.language) == ("a.wav", 2, "zh")
    for command in (
        ["evaluate"],
        ["merge"],
        ["convert"],
        ["serve"],
        ["demo"],
        ["prepare", "pack"],
        ["models", "list"],
    ):
        assert build_parser().parse_args([*command, "--config=x.yaml"]).config == "x.yaml"
    # a nested subcommand reads its own options from the file
    path = tmp_path / "pack.yaml"
    path.write_text("manifest: train.jsonl\noutput: packed.jsonl\n", encoding="utf-8")
    argv = ["prepare", "pack", f"--config={path}"]
    args = apply_config(build_parser().parse_args(argv), argv)
    assert (args.manifest, args.output) == ("train.jsonl", "packed.jsonl")


def test_a_shipped_example_is_found_by_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_name = _finetune_config(["--config=cpu.yaml"])
    by_path = _finetune_config([f"--config={CONFIGS[0].parent / 'cpu.yaml'}"])
    assert by_name == by_path
    # a file of that name where the user stands wins over the shipped one
    (tmp_path / "cpu.yaml").write_text("train_data: mine.jsonl\n", encoding="utf-8")
    assert _finetune_config(["--config=cpu.yaml"]).train_data == "mine.jsonl"
    # neither here nor shipped: the error names the path given
    with pytest.raises(ValueError, match="no-such.yaml"):
        _finetune_config(["--config=no-such.yaml"])
