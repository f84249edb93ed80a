"""Paths no test walked (issue 9, "Tests that would not fail"): gradient checkpointing
when asked, ``accelerate launch``, ``prepare pack`` from the command line, and GPU
training in 8 bit and fp16/bf16 (run where a GPU is present)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from finetune_data import CLIPS, small_config, write_manifest
from transformers import TrainerCallback

from whisper_finetune.training.train import finetune

SRC = Path(__file__).resolve().parents[2] / "src"


_cfg = functools.partial(small_config, max_steps=1, save_steps=1)


class CheckpointingSeen(TrainerCallback):
    def __init__(self):
        self.seen = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.seen.append(
            any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
        )


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("on", [True, False])
def test_gradient_checkpointing_is_on_exactly_when_asked(tiny_model_dir, tmp_path, on):
    train = write_manifest(tmp_path / "data", clips=CLIPS[:2])
    seen = CheckpointingSeen()
    finetune(_cfg(tiny_model_dir, train, tmp_path / "run", gradient_checkpointing=on), [seen])
    assert seen.seen == [on]


@pytest.mark.slow
def test_accelerate_launch_runs_finetune(tiny_model_dir, tmp_path):
    train = write_manifest(tmp_path / "data", clips=CLIPS[:2])
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--cpu", "--num_processes=1", "--num_machines=1"]
    cmd += ["--mixed_precision=no", "--dynamo_backend=no", "-m", "whisper_finetune", "finetune"]
    cmd += [f"--base_model={tiny_model_dir}", f"--train_data={train}"]
    cmd += [f"--output_dir={tmp_path / 'run'}", "--max_steps=1", "--save_steps=1"]
    cmd += ["--per_device_train_batch_size=2", "--warmup_steps=0", "--report_to=none"]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["HF_HOME"] = str(tmp_path / "hf")  # no accelerate config file of the machine
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    final = tmp_path / "run" / "final"
    assert (final / "adapter_model.safetensors").is_file()
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 1


def test_prepare_pack_from_the_command_line(tmp_path):
    from whisper_finetune.cli import main
    from whisper_finetune.data.manifest import read_manifest

    manifest = write_manifest(tmp_path / "clips")
    out = tmp_path / "packed.jsonl"
    argv = ["prepare", "pack", f"--manifest={manifest}", f"--output={out}"]
    assert main([*argv, "--max_duration=6", "--shuffle=false"]) == 0
    packed = read_manifest(out)
    assert len(packed) < len(CLIPS)  # some utterances share a window
    assert max(len(r.sentences) for r in packed) >= 2
    for record in packed:
        assert record.duration <= 6.0 + 1e-6
        assert Path(record.audio_path).is_file()
    packed_chars = sorted("".join(s.text for r in packed for s in r.sentences).replace(" ", ""))
    assert packed_chars == sorted("".join(c[0] for c in CLIPS).replace(" ", ""))  # all, once


def _cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_gpu_training_in_half_precision(tiny_model_dir, tmp_path, precision):
    _cuda()
    import torch

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    train = write_manifest(tmp_path / "data", clips=CLIPS)
    for method in ("lora", "adalora", "full"):
        cfg = _cfg(
            tiny_model_dir,
            train,
            tmp_path / method,
            method=method,
            precision=precision,
            device="cuda",
            max_steps=4 if method == "adalora" else 2,
            save_steps=2,
        )
        result = finetune(cfg)
        assert result.global_step == cfg.max_steps and result.train_loss == result.train_loss


@pytest.mark.gpu
def test_gpu_training_in_8_bit(tiny_model_dir, tmp_path):
    _cuda()
    pytest.importorskip("bitsandbytes")
    train = write_manifest(tmp_path / "data", clips=CLIPS)
    cfg = _cfg(tiny_model_dir, train, tmp_path / "run", use_8bit=True, device="cuda", max_steps=2)
    result = finetune(cfg)
    assert result.global_step == 2 and (result.final_dir / "adapter_model.safetensors").is_file()
