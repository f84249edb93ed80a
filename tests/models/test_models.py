"""The ``models`` command, CTranslate2 import, and model names that cannot resolve offline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from whisper_finetune.cli import main


def test_hub_id_offline_fails_fast_and_names_the_embedded_model(monkeypatch, test_wav, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    argv = ["infer", f"--audio_path={test_wav}", "--model_path=openai/whisper-small"]
    assert main(argv) == 1
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert "openai/whisper-small" in err and "embedded:whisper-base" in err


def test_missing_audio_is_reported(capsys, tmp_path):
    assert main(["infer", f"--audio_path={tmp_path / 'nope.wav'}"]) == 1
    assert "nope.wav" in capsys.readouterr().err


def test_models_list_and_path(capsys):
    assert main(["models", "list"]) == 0
    assert "embedded:whisper-base" in capsys.readouterr().out
    assert main(["models", "path", "embedded:whisper-base", "--backend=ct2"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "model.bin").is_file() and (folder / "tokenizer.json").is_file()


@pytest.mark.slow
def test_import_ct2_round_trip_on_the_embedded_model(tmp_path, capsys):
    from safetensors.numpy import load_file
    from transformers import WhisperForConditionalGeneration

    from whisper_finetune.models.embedded import embedded_ct2, embedded_transformers

    dst = tmp_path / "whisper-base-hf"
    assert main(["models", "import-ct2", str(embedded_ct2()), str(dst)]) == 0
    assert Path(capsys.readouterr().out.strip()) == dst
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
    ):
        assert (dst / name).is_file(), name
    ours = load_file(dst / "model.safetensors")
    cached = load_file(embedded_transformers() / "model.safetensors")
    assert ours.keys() == cached.keys()
    assert all((ours[k] == cached[k]).all() for k in ours)
    model = WhisperForConditionalGeneration.from_pretrained(dst)
    assert model.generation_config.lang_to_id["<|zh|>"] == 50260
    # a second import into the same folder needs --overwrite
    assert main(["models", "import-ct2", str(embedded_ct2()), str(dst)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def _fake_ct2(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("model.bin", "tokenizer.json", "config.json"):
        (folder / name).write_bytes(b"{}")
    return folder


@pytest.mark.parametrize("target", ["source", "parent"])
def test_import_ct2_overwrite_never_deletes_the_source(tmp_path, capsys, target):
    src = _fake_ct2(tmp_path / "models" / "faster-whisper-small")
    (tmp_path / "models" / "readme.txt").write_text("mine")
    dst = src if target == "source" else src.parent
    assert main(["models", "import-ct2", str(src), str(dst), "--overwrite"]) == 1
    assert "would delete the input" in capsys.readouterr().err
    assert (src / "model.bin").read_bytes() == b"{}"
    assert (tmp_path / "models" / "readme.txt").read_text() == "mine"


def test_import_ct2_overwrite_refuses_a_folder_of_other_files(tmp_path, capsys):
    src = _fake_ct2(tmp_path / "ct2")
    dst = tmp_path / "project"
    dst.mkdir()
    (dst / "train.py").write_text("print('mine')")
    assert main(["models", "import-ct2", str(src), str(dst), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "holds train.py" in err and "refusing to replace it" in err
    assert (dst / "train.py").read_text() == "print('mine')"
