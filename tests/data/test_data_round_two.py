"""Issue 27 (round two), the data side: outputs that would replace inputs, late or
unnamed errors, records that pass unremarked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from whisper_finetune.cli import main
from whisper_finetune.data.audio import SAMPLE_RATE


def write_tone(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05).astype(np.float32), SAMPLE_RATE)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    return path


def record(audio: str, sentence: str = "你好", **extra) -> dict:
    return {"audio": {"path": audio}, "sentence": sentence, **extra}


# ----------------------------------------------------------------- 27.2: --report=M


def test_validate_report_never_replaces_the_manifest(tmp_path, capsys):
    write_tone(tmp_path / "a.wav", 1.0)
    manifest = write_jsonl(tmp_path / "m.jsonl", [record("a.wav")])
    before = manifest.read_bytes()
    assert main(["prepare", "validate", str(manifest), f"--report={manifest}"]) == 1
    err = capsys.readouterr().err
    assert "--report" in err and "is the input" in err and str(manifest) in err
    assert manifest.read_bytes() == before
    # the audio a record names is an input too
    assert main(["prepare", "validate", str(manifest), f"--report={tmp_path / 'a.wav'}"]) == 1
    assert "is the input" in capsys.readouterr().err
    assert sf.info(str(tmp_path / "a.wav")).duration == 1.0


# -------------------------------------------------- 27.3: prepare folder over train.jsonl


def test_prepare_folder_never_replaces_a_manifest_already_there(tmp_path, capsys):
    root = tmp_path / "mine"
    for name in ("a", "b", "c"):
        write_tone(root / f"{name}.wav", 1.0)
        (root / f"{name}.txt").write_text("你好", encoding="utf-8")
    (root / "train.jsonl").write_text("my own training list\n", encoding="utf-8")
    assert main(["prepare", "folder", f"--input_dir={root}"]) == 1
    err = capsys.readouterr().err
    assert str(root / "train.jsonl") in err and "--overwrite" in err
    assert (root / "train.jsonl").read_text(encoding="utf-8") == "my own training list\n"
    assert not (root / "test.jsonl").exists()
    # elsewhere, or with --overwrite, it is written
    assert (
        main(["prepare", "folder", f"--input_dir={root}", f"--target_dir={tmp_path / 'out'}"]) == 0
    )
    assert (tmp_path / "out" / "train.jsonl").is_file()
    assert main(["prepare", "folder", f"--input_dir={root}", "--overwrite"]) == 0
    assert (root / "train.jsonl").read_text(encoding="utf-8") != "my own training list\n"
