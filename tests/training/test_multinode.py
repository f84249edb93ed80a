"""Beyond one machine: two torchrun "nodes" (one gloo process each, c10d rendezvous)
train in lockstep on CPU; the shipped accelerate FSDP config resolves to a sharding plan
for Whisper's layers; and on a GPU machine, accelerate launch with it fine-tunes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from finetune_data import write_manifest

from whisper_finetune.training.callbacks import WEIGHT_DIGEST_ENV

SRC = Path(__file__).resolve().parents[2] / "src"
FSDP_CONFIG = SRC / "whisper_finetune" / "configs" / "accelerate-fsdp.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _finetune_args(model, train, out) -> list[str]:
    return [
        "-m",
        "whisper_finetune",
        "finetune",
        f"--base_model={model}",
        f"--train_data={train}",
        f"--output_dir={out}",
        "--per_device_train_batch_size=2",
        "--max_steps=2",
        "--save_steps=2",
        "--logging_steps=1",
        "--lora_r=4",
        "--lora_alpha=8",
        "--warmup_steps=0",
        "--report_to",
        "none",
    ]


@pytest.mark.slow
def test_two_nodes_with_a_rendezvous_endpoint_train_in_lockstep(tiny_model_dir, tmp_path):
    """What the README's multi-node command does, with both "machines" on this one."""
    train = write_manifest(tmp_path / "data")
    out, digests = tmp_path / "run", tmp_path / "digests"
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        WEIGHT_DIGEST_ENV: str(digests),
        "OMP_NUM_THREADS": "1",
    }
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc_per_node=1",
                f"--node_rank={rank}",
                "--rdzv_backend=c10d",
                f"--rdzv_endpoint={endpoint}",
                "--rdzv_id=whisper-finetune-test",
                *_finetune_args(tiny_model_dir, train, out),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=400)[0] for node in nodes]
    for node, log in zip(nodes, logs, strict=True):
        assert node.returncode == 0, log[-4000:]
    ranks = [json.loads((digests / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 2
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    provenance = json.loads((out / "finetune_config.json").read_text())["provenance"]
    assert provenance["world_size"] == 2
    assert (out / "final" / "adapter_model.safetensors").is_file()


def _accelerate_env(config: Path, *extra: str):
    """The torchrun arguments and the environment ``accelerate launch --config_file config``
    gives each process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(config), *extra, "-m", "whisper_finetune"])
    args, _, _ = _validate_launch_command(args)
    assert args.use_fsdp
    return args, prepare_multi_gpu_env(args)


def test_the_shipped_fsdp_config_shards_whisper_layers(tiny_model_dir, monkeypatch):
    from accelerate import FullyShardedDataParallelPlugin
    from transformers import WhisperForConditionalGeneration
    from transformers.models.whisper.modeling_whisper import (
        WhisperDecoderLayer,
        WhisperEncoderLayer,
    )

    _, env = _accelerate_env(FSDP_CONFIG)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"  # a whole model for merge/convert
    plugin.set_auto_wrap_policy(WhisperForConditionalGeneration.from_pretrained(tiny_model_dir))
    assert plugin.auto_wrap_policy.keywords["transformer_layer_cls"] == {
        WhisperEncoderLayer,
        WhisperDecoderLayer,
    }
    # several machines: the same file, with the machine's rank and the first machine's address
    two, _ = _accelerate_env(
        FSDP_CONFIG,
        "--num_machines=2",
        "--num_processes=16",
        "--machine_rank=1",
        "--main_process_ip=10.0.0.1",
        "--main_process_port=29500",
    )
    assert (two.nnodes, two.nproc_per_node, two.node_rank) == ("2", "8", 1)
    assert two.rdzv_endpoint == "10.0.0.1:29500"  # torchrun's --rdzv_endpoint


@pytest.mark.gpu
@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="FSDP training needs CUDA GPUs"
)
def test_accelerate_fsdp_full_finetune_on_gpus(tiny_model_dir, tmp_path):
    import torch

    train = write_manifest(tmp_path / "data")
    out = tmp_path / "fsdp"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        f"--config_file={FSDP_CONFIG}",
        f"--num_processes={torch.cuda.device_count()}",
        f"--main_process_port={_free_port()}",
        *_finetune_args(tiny_model_dir, train, out),
        "--method=full",
        "--learning_rate=1e-4",
        "--gradient_checkpointing=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(out / "final")
    assert sum(p.numel() for p in model.parameters()) > 0
