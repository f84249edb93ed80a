"""Training on the tiny random Whisper: LoRA, AdaLoRA, full, resume after a kill, DDP."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from finetune_data import CLIPS, small_config, write_manifest
from safetensors.torch import load_file
from transformers import TrainerCallback

from whisper_finetune.data.manifest import ManifestError
from whisper_finetune.training.adapters import target_modules_regex
from whisper_finetune.training.callbacks import WEIGHT_DIGEST_ENV
from whisper_finetune.training.config import adalora_total_step
from whisper_finetune.training.train import FinetuneConfig, finetune, latest_checkpoint
from whisper_finetune.training.trainer import GUARD_PENALTY, GuardPolicy

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train-data")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    return {
        "all": write_manifest(folder),
        # two clips: with batch size 2 every step sees the same batch
        "pair": write_manifest(folder, clips=CLIPS[:2], name="pair.jsonl"),
        # the six clips and a broken file on line 7
        "bad": write_manifest(
            folder, name="bad.jsonl", extra=[{"audio": {"path": "broken.wav"}, "sentence": "坏"}]
        ),
    }


_cfg = functools.partial(small_config, max_steps=4, lora_alpha=8, generation_max_length=6)


class LossRecorder(TrainerCallback):
    def __init__(self):
        self.losses = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def _assert_learns(losses, steps):
    assert len(losses) == steps and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]


# ---- pure functions -------------------------------------------------------------------


def test_adalora_total_step_counts_optimizer_steps():
    assert adalora_total_step(1000, 8, 1, 1, 3) == 375  # ceil(1000 / 8) * 3
    assert adalora_total_step(1000, 8, 4, 1, 3) == 96  # ceil(1000 / 32) * 3
    assert adalora_total_step(1000, 8, 4, 2, 3) == 48  # ceil(1000 / 64) * 3
    assert adalora_total_step(10, 4, 1, 1, 1.5) == 5  # ceil(ceil(10 / 4) * 1.5)
    assert adalora_total_step(1000, 8, 1, 1, 3, max_steps=50) == 50
    assert adalora_total_step(1, 8) == 1


def test_lora_layer_scopes():
    import re

    names = [
        "model.encoder.layers.0.self_attn.q_proj",
        "model.encoder.layers.1.fc1",
        "model.decoder.layers.0.self_attn.q_proj",
        "model.decoder.layers.0.encoder_attn.q_proj",
        "model.decoder.layers.1.fc2",
        "model.decoder.embed_tokens",
    ]

    def matched(scope):
        pattern = target_modules_regex(("q_proj", "fc1", "fc2"), scope)
        return [n for n in names if re.fullmatch(pattern, n)]

    assert matched("encoder") == names[:2]
    assert matched("decoder") == names[2:5]  # encoder_attn belongs to the decoder
    assert matched(r"layers\.1\.") == ["model.encoder.layers.1.fc1", "model.decoder.layers.1.fc2"]
    assert target_modules_regex(("q_proj",), "all") == ["q_proj"]


def test_guard_policy_prefers_checkpoints_within_the_guard():
    policy = GuardPolicy(baseline=0.20, max_increase=0.01)
    assert policy.score(main=0.30, guard=0.21) == 0.30
    assert policy.score(main=0.10, guard=0.25) == pytest.approx(GUARD_PENALTY + 0.04)
    assert policy.score(0.9, 0.205) < policy.score(0.1, 0.22) < policy.score(0.1, 0.30)


def test_config_validation(tmp_path):
    cfg = FinetuneConfig(train_data="t.jsonl", use_adalora=True)
    assert cfg.method == "adalora"
    cpu = cfg.resolved(cuda_available=False, bf16_supported=False)
    assert (cpu.precision, cpu.device, cpu.num_workers, cpu.learning_rate) == (
        "fp32",
        "cpu",
        0,
        1e-3,
    )
    gpu = cfg.resolved(cuda_available=True, bf16_supported=True)
    assert (gpu.precision, gpu.device) == ("bf16", "cuda")
    assert (
        FinetuneConfig(train_data="t", method="full").resolved(False, False).learning_rate == 1e-5
    )
    for bad, match in [
        (dict(precision="fp16"), "fp16 needs CUDA"),
        (dict(use_8bit=True), "needs a CUDA GPU"),
        (dict(max_duration=40), "max_duration must be in"),
        (dict(test_data="x", save_steps=10, eval_steps=3), "multiple of --eval_steps"),
        (dict(guard_max_increase=0.01), "needs --guard_data"),
        (dict(train_data=""), "--train_data is required"),
    ]:
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(FinetuneConfig(train_data="t"), **bad).resolved(False, False)
    with pytest.raises(ValueError, match="no complete checkpoint"):
        finetune(
            FinetuneConfig(train_data="t", output_dir=str(tmp_path), resume_from_checkpoint="true")
        )


def test_cli_builds_the_config():
    from whisper_finetune.cli import build_parser
    from whisper_finetune.cli._args import dataclass_from_args

    args = build_parser().parse_args(
        [
            "finetune",
            "--base_model=embedded:whisper-base",
            "--train_data=a.jsonl",
            "--use_adalora",
            "--target_modules",
            "q_proj",
            "v_proj",
            "--lora_layers=decoder",
            "--max_audio_len=20",
            "--gradient_checkpointing",
            "--report_to",
            "none",
        ]
    )
    cfg = dataclass_from_args(FinetuneConfig, args)
    assert cfg.method == "adalora" and cfg.target_modules == ("q_proj", "v_proj")
    assert cfg.max_duration == 20 and cfg.gradient_checkpointing and cfg.report_to == ("none",)


# ---- training runs ----------------------------------------------------------------------


def test_lora_with_gradient_checkpointing_learns(tiny_model_dir, data, tmp_path):
    out = tmp_path / "lora"
    losses = LossRecorder()
    cfg = _cfg(
        tiny_model_dir, data["pair"], out, max_steps=5, save_steps=5, gradient_checkpointing=True
    )
    result = finetune(cfg, callbacks=[losses])
    _assert_learns(losses.losses, 5)
    assert result.global_step == 5
    weights = load_file(result.final_dir / "adapter_model.safetensors")
    encoder_b = [v for k, v in weights.items() if ".encoder." in k and "lora_B" in k]
    assert encoder_b and all(v.abs().sum() > 0 for v in encoder_b)  # gradients reached the encoder
    adapter = json.loads((result.final_dir / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(tiny_model_dir).resolve())
    for name in ("tokenizer.json", "preprocessor_config.json"):
        assert (result.final_dir / name).is_file()
    saved = json.loads((out / "finetune_config.json").read_text())
    assert (saved["method"], saved["precision"], saved["learning_rate"]) == ("lora", "fp32", 1e-2)
    # a second run never mixes into the first one's checkpoints by accident
    with pytest.raises(ValueError, match="already holds checkpoints"):
        finetune(cfg)
    again = dataclasses.replace(cfg, overwrite_output_dir=True, max_steps=1, save_steps=1)
    assert finetune(again).global_step == 1
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]


class RankRecorder(TrainerCallback):
    """Active (non-zero) AdaLoRA ranks per module after every optimizer step."""

    def __init__(self):
        self.history = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        ranks = {n: int((p != 0).sum()) for n, p in model.named_parameters() if "lora_E" in n}
        self.history.append(ranks)


def test_adalora_reallocates_ranks(tiny_model_dir, data, tmp_path):
    ranks, losses = RankRecorder(), LossRecorder()
    cfg = _cfg(
        tiny_model_dir,
        data["pair"],
        tmp_path / "ada",
        method="adalora",
        max_steps=8,
        save_steps=8,
        adalora_init_r=4,
        adalora_target_r=2,
        adalora_tinit=2,
        adalora_tfinal=2,
        adalora_delta_t=1,
        target_modules=("q_proj", "v_proj", "fc1"),
    )
    result = finetune(cfg, callbacks=[ranks, losses])
    _assert_learns(losses.losses, 8)
    n_modules = len(ranks.history[0])
    totals = [sum(h.values()) for h in ranks.history]
    assert totals[0] == 4 * n_modules  # all initial ranks active during warm-up
    assert totals[-1] == 2 * n_modules  # the target budget at the end
    assert totals == sorted(totals, reverse=True) and len(set(totals)) > 2  # pruned step by step
    final = ranks.history[-1]
    assert len(set(final.values())) > 1  # reallocated, not a uniform cut to r=2
    pattern = json.loads((result.final_dir / "adapter_config.json").read_text())["rank_pattern"]
    assert sorted(sum(v) for v in pattern.values()) == sorted(final.values())
    # peft cannot load a pruned AdaLoRA checkpoint back for training: a clear error, not a
    # wall of size mismatches
    with pytest.raises(ValueError, match="cannot resume AdaLoRA"):
        finetune(dataclasses.replace(cfg, resume_from_checkpoint="true"))


def test_gradient_accumulation_and_bad_samples(tiny_model_dir, data, tmp_path):
    """Whisper's loss is a mean: accumulating 3 batches must not triple it (transformers 5
    assumes models taking **kwargs sum over num_items_in_batch). Bad clips stop the run,
    or are skipped and reported."""
    cfg = _cfg(
        tiny_model_dir,
        data["bad"],
        tmp_path / "ga",
        max_steps=1,
        save_steps=1,
        gradient_accumulation_steps=3,
    )
    with pytest.raises(ManifestError, match=rf"{data['bad'].name}:7: .*broken\.wav"):
        finetune(cfg)
    losses = LossRecorder()
    finetune(dataclasses.replace(cfg, skip_bad_samples=True), callbacks=[losses])
    assert 9.0 < losses.losses[0] < 12.0  # about ln(51865) = 10.86 for a random model
    report = json.loads((tmp_path / "ga" / "data_report.json").read_text())["train"]
    assert report["skipped_count"] == 1 and report["skipped_by_reason"]["bad_audio"] == 1
    assert report["skipped"][0]["origin"].endswith(f"{data['bad'].name}:7")


def test_freeze_encoder_and_spec_augment(tiny_model_dir):
    from whisper_finetune.training.adapters import build_model

    def build(**kw):
        cfg = FinetuneConfig(train_data="t", base_model=str(tiny_model_dir), **kw)
        return build_model(cfg.resolved(False, False), str(tiny_model_dir), 8)

    full = build(method="full", freeze_encoder=True, apply_spec_augment=True, mask_time_prob=0.1)
    trainable = [n for n, p in full.named_parameters() if p.requires_grad]
    assert trainable and not any(".encoder." in n for n in trainable)
    assert full.config.apply_spec_augment and full.config.mask_time_prob == 0.1
    assert full.accepts_loss_kwargs is False
    lora = build(freeze_encoder=True, target_modules=("q_proj", "fc1"))
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".decoder." in n for n in trainable)
    assert any("encoder_attn" in n for n in trainable)  # cross-attention is the decoder's


def test_full_finetuning_with_eval_and_guard(tiny_model_dir, data, tmp_path, monkeypatch):
    losses = LossRecorder()
    out = tmp_path / "full"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = _cfg(
        tiny_model_dir,
        data["pair"],
        out,
        method="full",
        learning_rate=1e-3,
        max_steps=4,
        save_steps=2,
        test_data=str(data["pair"]),
        guard_data=str(data["pair"]),
        guard_max_increase=0.0,
        save_total_limit=1,
        report_to=("tensorboard",),
    )
    result = finetune(cfg, callbacks=[losses])
    # TensorBoard's events, the guard baseline's included, go to the run folder: not to
    # ./runs, where the baseline's evaluation (before training) used to open a writer
    assert not (elsewhere / "runs").exists()
    assert len(list(out.glob("runs/*/events.out.tfevents.*"))) == 1
    _assert_learns(losses.losses, 4)
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
    ):
        assert (result.final_dir / name).is_file(), name
    baseline = json.loads((out / "guard_baseline.json").read_text())
    assert baseline["value"] == result.guard_baseline
    evals = [
        h
        for h in json.loads((out / "trainer_state.json").read_text())["log_history"]
        if "eval_cer" in h
    ]
    assert [h["step"] for h in evals] == [2, 4]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    guarded = [h["eval_guarded_cer"] for h in history if "eval_guarded_cer" in h]
    assert len(guarded) == 2 and any("eval_guard_cer" in h for h in history)
    assert result.best_metric == min(guarded)
    assert result.guard_ok is not None and result.best_checkpoint
    assert {p.name for p in out.glob("checkpoint-*")} == {Path(result.best_checkpoint).name}


_KILLED_RUN = textwrap.dedent("""
    import json, os, signal, sys
    from transformers import TrainerCallback
    from whisper_finetune.training.train import FinetuneConfig, finetune

    class KillAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, like an OOM kill or a power cut

    cfg = json.loads(sys.argv[1])
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    finetune(FinetuneConfig(**cfg), callbacks=[KillAfterFirstCheckpoint()])
""")


def test_killed_run_resumes_to_the_same_weights(tiny_model_dir, data, tmp_path):
    from whisper_finetune.cli import main

    common = dict(max_steps=4, save_steps=2, lora_dropout=0.1, timestamp_ratio=0.5)
    reference = finetune(_cfg(tiny_model_dir, data["all"], tmp_path / "ref", **common))

    out = tmp_path / "killed"
    cfg = _cfg(tiny_model_dir, data["all"], out, **common)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, json.dumps(cfg.to_json())],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert latest_checkpoint(out).name == "checkpoint-2" and not (out / "final").exists()

    (out / "checkpoint-3").mkdir()  # as if killed while saving step 3: no trainer_state.json
    (out / "checkpoint-3" / "optimizer.pt").write_bytes(b"partial")
    flags = [
        f"--{k}={v}"
        for k, v in cfg.to_json().items()
        if v is not None and not isinstance(v, (list, tuple))
    ]
    assert main(["finetune", *flags, "--report_to", "none", "--resume_from_checkpoint=true"]) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == reference.global_step == 4
    assert not (out / "checkpoint-3").exists()
    ref = load_file(reference.final_dir / "adapter_model.safetensors")
    got = load_file(out / "final" / "adapter_model.safetensors")
    assert ref.keys() == got.keys()
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-6)
    assert any(v.abs().sum() > 0 for k, v in got.items() if "lora_B" in k)


def test_two_process_gloo_run_keeps_ranks_identical(tiny_model_dir, data, tmp_path):
    out, digests = tmp_path / "ddp", tmp_path / "digests"
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        WEIGHT_DIGEST_ENV: str(digests),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "whisper_finetune",
        "finetune",
        f"--base_model={tiny_model_dir}",
        f"--train_data={data['all']}",
        f"--output_dir={out}",
        "--per_device_train_batch_size=2",
        "--max_steps=3",
        "--save_steps=3",
        "--logging_steps=1",
        "--lora_r=4",
        "--lora_alpha=8",
        "--learning_rate=1e-2",
        "--warmup_steps=0",
        "--report_to",
        "none",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((digests / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 3
    assert ranks[0]["sha256"] == ranks[1]["sha256"] and ranks[0]["numel"] > 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert all(9.0 < h["loss"] < 12.0 for h in history if "loss" in h)  # not scaled by world size
    assert json.loads((out / "finetune_config.json").read_text())["provenance"]["world_size"] == 2
    assert (out / "final" / "adapter_model.safetensors").is_file()
