"""``prepare pack`` never writes over its input, nor into a folder of other files."""

from __future__ import annotations

import json

import numpy as np

from whisper_finetune.cli import main
from whisper_finetune.data.audio import SAMPLE_RATE, write_wav


def _manifest(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(SAMPLE_RATE, np.float32))
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"audio": {"path": "a.wav"}, "sentence": "你好", "duration": 1.0}) + "\n"
    )
    return path


def test_pack_refuses_to_replace_its_input_manifest(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    before = manifest.read_bytes()
    assert main(["prepare", "pack", f"--manifest={manifest}", f"--output={manifest}"]) == 1
    assert "is the input manifest: packing would replace it" in capsys.readouterr().err
    assert manifest.read_bytes() == before


def test_pack_refuses_an_audio_dir_of_other_files(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    mine = tmp_path / "recordings"
    mine.mkdir()
    (mine / "window-000000.wav").write_bytes(b"my own recording, by chance so named")
    (mine / "take1.wav").write_bytes(b"mine")
    argv = [
        "prepare",
        "pack",
        f"--manifest={manifest}",
        f"--output={tmp_path / 'p.jsonl'}",
        f"--audio_dir={mine}",
    ]
    assert main(argv) == 1
    assert "holds take1.wav" in capsys.readouterr().err
    assert (mine / "window-000000.wav").read_bytes() == b"my own recording, by chance so named"
    # the manifest's own folder holds the input: never a place for windows
    assert main([*argv[:-1], f"--audio_dir={tmp_path}"]) == 1
    assert "contains the input" in capsys.readouterr().err
    assert main(argv[:-1]) == 0  # default: a new folder beside the output
