"""Issue 27 (round two), the commands: two writers of one output folder, resuming with
changed flags, adapters that are not whole, and --config files read strictly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from finetune_data import CLIPS, write_manifest

from whisper_finetune.cli import main
from whisper_finetune.staging import lock_path

SRC = Path(__file__).resolve().parents[2] / "src"
_HOLD = """
import sys, time
from whisper_finetune.staging import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held_by_another_process():
    """Hold an output folder's lock in another process, as a second run would."""
    procs = []

    def hold(folder: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(folder)], env=env, stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def lora_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration

    from whisper_finetune.training.adapters import stored_base_name

    torch.manual_seed(0)
    base = WhisperForConditionalGeneration.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_proj", "v_proj"]
    )
    model = get_peft_model(base, config)
    model.peft_config["default"].base_model_name_or_path = stored_base_name(str(tiny_model_dir))
    out = tmp_path_factory.mktemp("adapters") / "lora"
    model.save_pretrained(out)
    return out


# ------------------------------------------------------ 27.4: two writers, one folder


def test_a_second_merge_into_a_folder_being_written_fails_at_once(
    lora_adapter, tmp_path, capsys, held_by_another_process
):
    out = tmp_path / "merged"
    holder = held_by_another_process(out)
    assert main(["merge", f"--lora_model={lora_adapter}", f"--output_dir={out}"]) == 1
    err = capsys.readouterr().err
    assert f"--output_dir {out} is being written by another run (pid {holder.pid}" in err
    assert not out.exists()
    # killed, the holder leaves its lock file behind, but the kernel released the lock
    holder.kill()
    holder.wait()
    assert lock_path(out).exists()
    assert main(["merge", f"--lora_model={lora_adapter}", f"--output_dir={out}"]) == 0
    assert (out / "model.safetensors").is_file() and not lock_path(out).exists()


def test_the_lock_is_released_and_removed_when_a_run_ends(lora_adapter, tmp_path):
    out = tmp_path / "merged"
    assert main(["merge", f"--lora_model={lora_adapter}", f"--output_dir={out}"]) == 0
    assert not lock_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_a_second_finetune_into_a_folder_being_written_fails_at_once(
    tiny_model_dir, tmp_path, capsys, held_by_another_process
):
    train = write_manifest(tmp_path / "data", clips=CLIPS[:2])
    out = tmp_path / "run"
    pid = held_by_another_process(out).pid
    argv = [
        "finetune",
        f"--base_model={tiny_model_dir}",
        f"--train_data={train}",
        f"--output_dir={out}",
        "--max_steps=1",
        "--lora_r=4",
        "--report_to=none",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"--output_dir {out} is being written by another run (pid {pid}" in err
    assert not out.exists()


# ------------------------------------------ 27.5 (and 27.15): resuming with other flags


def test_resume_refuses_changed_flags_or_applies_them_when_told(tiny_model_dir, tmp_path, capsys):
    train = write_manifest(tmp_path / "data", clips=CLIPS[:2])
    out = tmp_path / "run"
    run = [
        "finetune",
        f"--base_model={tiny_model_dir}",
        f"--train_data={train}",
        f"--output_dir={out}",
        "--save_steps=2",
        "--lora_r=4",
        "--report_to=none",
        "--warmup_steps=0",
        "--logging_steps=1",
        "--per_device_train_batch_size=2",
    ]
    assert main([*run, "--max_steps=2", "--learning_rate=0.001"]) == 0
    recorded = (out / "finetune_config.json").read_text()
    resume = [*run, "--max_steps=4", "--resume_from_checkpoint=true"]
    capsys.readouterr()

    assert main([*resume, "--learning_rate=0.002", "--weight_decay=0.1"]) == 1
    err = capsys.readouterr().err
    assert "--learning_rate 0.001 -> 0.002" in err and "--weight_decay 0.0 -> 0.1" in err
    assert "--allow_changed_optimization" in err
    assert (out / "finetune_config.json").read_text() == recorded  # nothing recorded
    # another adapter shape or base model: refused, override or not
    lora8 = [a if a != "--lora_r=4" else "--lora_r=8" for a in resume]
    assert main([*lora8, "--allow_changed_optimization"]) == 1
    assert "--lora_r 4 -> 8" in capsys.readouterr().err
    other_base = [*resume[:1], "--base_model=embedded:whisper-base", *resume[2:]]
    assert main(other_base) == 1
    assert "--base_model" in capsys.readouterr().err

    # told to, the new learning rate is applied to the restored scheduler, and recorded
    assert main([*resume, "--learning_rate=0.002", "--allow_changed_optimization"]) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    lr = {e["step"]: e["learning_rate"] for e in state["log_history"] if "learning_rate" in e}
    # the rate each step used: linear from the peak to 0 over the 4 steps, the old peak
    # for steps 1-2, the new one from step 3 on (the restored scheduler alone gives 0.0005)
    assert lr[1] == pytest.approx(0.001) and lr[3] == pytest.approx(0.002 * 2 / 4)
    assert json.loads((out / "finetune_config.json").read_text())["learning_rate"] == 0.002


def test_resume_from_a_damaged_trainer_state_names_the_file(tiny_model_dir, tmp_path, capsys):
    train = write_manifest(tmp_path / "data", clips=CLIPS[:2])
    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2,')
    argv = [
        "finetune",
        f"--base_model={tiny_model_dir}",
        f"--train_data={train}",
        f"--output_dir={out}",
        "--resume_from_checkpoint=true",
        "--report_to=none",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert (
        f"{out / 'checkpoint-2' / 'trainer_state.json'}: the checkpoint's training state does not parse"
        in err
    )


# --------------------------------------------- 27.12 (and 27.15): adapters not whole


@pytest.mark.parametrize("damage", ["no_weights", "truncated", "other_base"])
def test_merge_names_what_is_wrong_with_the_adapter(lora_adapter, tmp_path, capsys, damage):
    import shutil

    from whisper_finetune.models.tiny import build_tiny_whisper
    from whisper_finetune.training.adapters import stored_base_name

    adapter = tmp_path / "adapter"
    shutil.copytree(lora_adapter, adapter)
    weights = adapter / "adapter_model.safetensors"
    if damage == "no_weights":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-1000])
    else:  # an adapter of another base model, of another width
        other = build_tiny_whisper(tmp_path / "wider", d_model=96)
        config = json.loads((adapter / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = stored_base_name(str(other))
        (adapter / "adapter_config.json").write_text(json.dumps(config))
    out = tmp_path / "merged"
    assert main(["merge", f"--lora_model={adapter}", f"--output_dir={out}"]) == 1
    err = capsys.readouterr().err
    expected = {
        "no_weights": f"{adapter} holds no adapter weights (adapter_model.safetensors)",
        "truncated": f"{weights} is truncated",
        "other_base": "do not fit the base model",
    }[damage]
    assert expected in err, err[-2000:]
    assert "Traceback" not in err and err.count("size mismatch") <= 1  # one line, not 64+
    assert not out.exists()


# ------------------------------------------------------- 27.14: --config read strictly


def _evaluate_args(argv: list[str]):
    from whisper_finetune.cli import build_parser
    from whisper_finetune.cli._args import apply_config

    args = build_parser().parse_args(argv)
    return apply_config(args, argv)


def test_an_abbreviated_flag_is_refused_not_overridden_by_the_config(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: from-the-file\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        _evaluate_args(["evaluate", "--config", str(config), "--output=from-the-flag"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --output=from-the-flag" in capsys.readouterr().err
    args = _evaluate_args(["evaluate", "--config", str(config), "--output_dir=from-the-flag"])
    assert args.output_dir == "from-the-flag"


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("c.yaml", "test_data: a.jsonl\nbatch_size: 4\nbatch_size: 8\n", "line 3"),
        ("c.yaml", "decoding:\n  beam_size: 1\n  beam_size: 5\n", "line 3"),
        ("c.json", '{"batch_size": 4, "batch_size": 8}', "c.json"),
    ],
)
def test_a_key_given_twice_in_one_mapping_is_an_error(tmp_path, name, text, where):
    config = tmp_path / name
    config.write_text(text, encoding="utf-8")
    key = "beam_size" if "beam" in text else "batch_size"
    with pytest.raises(ValueError, match=rf"{key}.* given twice") as err:
        _evaluate_args(["evaluate", "--config", str(config)])
    assert where in str(err.value) and str(config) in str(err.value)


def test_null_is_none_where_none_is_allowed_and_an_error_elsewhere(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("language: null\noutput_dir: null\n", encoding="utf-8")
    args = _evaluate_args(["evaluate", "--config", str(config)])
    assert args.language is None and args.output_dir is None
    config.write_text("model_path: null\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"model_path: null is not a value this option takes"):
        _evaluate_args(["evaluate", "--config", str(config)])


# ------------------------------------ 27.10: Ctrl-C without a traceback, progress per batch


@pytest.mark.parametrize("command", ["finetune", "infer"])
def test_ctrl_c_ends_with_one_line_and_status_130(monkeypatch, capsys, command):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    if command == "finetune":
        monkeypatch.setattr("whisper_finetune.training.train.finetune", interrupted)
        argv = ["finetune", "--train_data=t.jsonl", "--output_dir=run"]
    else:
        monkeypatch.setattr("whisper_finetune.inference.loader.load_transcriber", interrupted)
        argv = ["infer", f"--audio_path={Path(__file__)}"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err


def test_long_audio_progress_moves_after_every_batch(monkeypatch):
    """A 1-hour file's bar stayed at 0 % for minutes: it moved once per 4 batches."""
    from contextlib import contextmanager

    import numpy as np

    from whisper_finetune.data.audio import SAMPLE_RATE
    from whisper_finetune.inference import chunks
    from whisper_finetune.inference.transcript import DecodeOptions, Segment, Transcript

    n_spans, span_s = 12, 25
    samples = np.zeros(n_spans * 30 * SAMPLE_RATE, np.float32)
    spans = [
        {"start": i * 30 * SAMPLE_RATE, "end": (i * 30 + span_s) * SAMPLE_RATE}
        for i in range(n_spans)
    ]
    monkeypatch.setattr(chunks, "speech_spans", lambda *_a, **_k: spans)
    calls, seen = [], []

    class Bar:
        n = 0.0

        def update(self, step):
            self.n += step
            seen.append((len(calls), self.n))

    @contextmanager
    def bar(*_args):
        yield Bar()

    monkeypatch.setattr(chunks, "progress_bar", bar)

    def decode(clips, options, batch_size):
        calls.append(len(clips))
        return [
            Transcript.from_segments(
                [Segment(0.0, len(c) / SAMPLE_RATE, "好")], "zh", len(c) / SAMPLE_RATE
            )
            for c in clips
        ]

    chunks.transcribe_chunked(samples, DecodeOptions.plain(language="zh"), decode, batch_size=2)
    moves = [(batches, n) for batches, n in seen]
    assert len(calls) == n_spans // 2  # 2 chunks per decode call
    assert [b for b, _ in moves[:3]] == [1, 2, 3]  # the bar moves after each batch
    assert 0 < moves[0][1] < moves[1][1] < moves[2][1]


@pytest.mark.parametrize(
    "error",
    [
        'SafetensorError: Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })',
        "OSError",
    ],
)
def test_a_full_disk_while_saving_a_checkpoint_is_one_line(
    tiny_model_dir, tmp_path, capsys, monkeypatch, error
):
    """27.15: a disk full while saving a checkpoint ended in a raw traceback."""
    import errno

    from safetensors import SafetensorError
    from transformers import Trainer

    def full(*_args, **_kwargs):
        if error == "OSError":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise SafetensorError(error)

    monkeypatch.setattr(Trainer, "_save_checkpoint", full)
    train = write_manifest(tmp_path / "data", clips=CLIPS[:2])
    out = tmp_path / "run"
    argv = [
        "finetune",
        f"--base_model={tiny_model_dir}",
        f"--train_data={train}",
        f"--output_dir={out}",
        "--max_steps=1",
        "--save_steps=1",
        "--lora_r=4",
        "--report_to=none",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"the disk holding {out} is full" in err and "--resume_from_checkpoint=true" in err
    assert "Traceback" not in err


def test_evaluate_and_demo_into_a_folder_being_written_fail_at_once(
    tmp_path, capsys, held_by_another_process
):
    from whisper_finetune.assets import test_wav_manifest

    report = tmp_path / "eval"
    holder = held_by_another_process(report)
    argv = ["evaluate", "--model_path=no-such-model", f"--test_data={test_wav_manifest()}"]
    assert main([*argv, f"--output_dir={report}"]) == 1  # refused before the model loads
    assert f"{report} is being written by another run (pid {holder.pid}" in capsys.readouterr().err
    demo = tmp_path / "demo"
    holder = held_by_another_process(demo)
    assert main(["demo", f"--output_dir={demo}"]) == 1
    assert f"{demo} is being written by another run (pid {holder.pid}" in capsys.readouterr().err
    assert not demo.exists()
