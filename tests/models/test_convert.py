"""CTranslate2 conversion: files, atomic output, the plain converter, and backend parity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from whisper_finetune.models.convert import PROVENANCE_FILE, convert_to_ct2


def test_tiny_model_converts_with_the_files_faster_whisper_needs(tiny_model_dir, tmp_path):
    out = convert_to_ct2(tiny_model_dir, tmp_path / "ct2", quantization="int8")
    assert out == tmp_path / "ct2"
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (out / name).is_file(), name
    provenance = json.loads((out / PROVENANCE_FILE).read_text())
    assert provenance["quantization"] == "int8"
    assert provenance["source_model"] == str(tiny_model_dir)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left"


def test_non_empty_output_is_refused_unless_forced(tiny_model_dir, tmp_path):
    from whisper_finetune.staging import UnsafeOutputError

    out = tmp_path / "ct2"
    convert_to_ct2(tiny_model_dir, out, quantization="float32")
    with pytest.raises(FileExistsError, match="--force"):
        convert_to_ct2(tiny_model_dir, out, quantization="int8")
    convert_to_ct2(tiny_model_dir, out, quantization="int8", force=True)  # our own: replaced
    assert json.loads((out / PROVENANCE_FILE).read_text())["quantization"] == "int8"
    # a folder with anything else in it is never replaced, --force or not
    (out / "keep.txt").write_text("mine")
    for force in (False, True):
        with pytest.raises(UnsafeOutputError, match=r"holds keep\.txt"):
            convert_to_ct2(tiny_model_dir, out, quantization="float32", force=force)
    assert (out / "keep.txt").read_text() == "mine" and (out / "model.bin").is_file()


def _tree(root: Path) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("target", ["source", "parent", "grandparent"])
def test_convert_force_never_deletes_the_source(tiny_model_dir, tmp_path, capsys, target):
    """Issue 10.1: --output_dir equal to --model_path, or above it, with --force."""
    from whisper_finetune.cli import main

    root = tmp_path / "work"
    src = root / "models" / "whisper"
    shutil.copytree(tiny_model_dir, src)
    (root / "notes.txt").write_text("a month of notes")
    (root / "models" / "other-model.bin").write_bytes(b"weights")
    before = _tree(root)
    out = {"source": src, "parent": src.parent, "grandparent": root}[target]
    argv = ["convert", f"--model_path={src}", f"--output_dir={out}", "--force"]
    assert main([*argv, "--quantization=int8"]) == 1
    err = capsys.readouterr().err
    assert "would delete the input" in err and str(src) in err
    assert _tree(root) == before  # every file kept, byte for byte
    assert not [p for p in root.rglob(".*")]  # no staging folder left behind


def test_bad_quantization_is_an_error(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="quantization"):
        convert_to_ct2(tiny_model_dir, tmp_path / "x", quantization="int3")


def test_missing_preprocessor_config_is_written_into_the_source(tiny_model_dir, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_model_dir, src)
    (src / "preprocessor_config.json").unlink()
    out = convert_to_ct2(src, tmp_path / "ct2", quantization="float32")
    assert (src / "preprocessor_config.json").is_file()
    config = json.loads((out / "preprocessor_config.json").read_text())
    assert config["feature_size"] == 80


def test_plain_ct2_transformers_converter_works_on_our_folders(tiny_model_dir, tmp_path):
    converter = Path(sys.executable).with_name("ct2-transformers-converter")
    out = tmp_path / "ct2"
    cmd = [str(converter), "--model", str(tiny_model_dir), "--output_dir", str(out)]
    cmd += ["--copy_files", "tokenizer.json", "preprocessor_config.json", "--quantization", "int8"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "tokenizer.json").is_file() and (out / "preprocessor_config.json").is_file()

    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions

    # the converter's model decodes as its source does (int8: the first tokens agree)
    options = DecodeOptions.plain(language="zh", without_timestamps=True, max_new_tokens=2)
    audio = np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3
    texts = [
        load_transcriber(m, b, device="cpu").transcribe(audio, options).text
        for m, b in ((out, "ct2"), (tiny_model_dir, "transformers"))
    ]
    assert texts[0] and texts[0].split()[0] == texts[1].split()[0], texts


def test_convert_cli_without_sample(tiny_model_dir, tmp_path, capsys):
    from whisper_finetune.cli import main

    out = tmp_path / "ct2"
    argv = ["convert", f"--model_path={tiny_model_dir}", f"--output_dir={out}"]
    assert main(argv) == 0
    assert "converted:" in capsys.readouterr().out
    assert main(argv) == 1  # not empty now
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force", "--quantization=int8"]) == 0


@pytest.mark.slow
def test_float32_conversion_of_whisper_base_gives_the_same_greedy_text(test_wav, tmp_path, capsys):
    """The acceptance check of a conversion, through the CLI: both texts and their CER."""
    from whisper_finetune.cli import main

    out = tmp_path / "base-ct2"
    argv = ["convert", "--model_path=embedded:whisper-base", f"--output_dir={out}"]
    argv += ["--quantization=float32", f"--sample={test_wav}", "--language=zh", "--device=cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    lines = dict(line.split(":", 1) for line in printed.splitlines() if ":" in line)
    assert lines["transformers"].strip() == lines["ct2"].strip(), printed
    assert "0.0000 (identical)" in printed


def test_ct2_backend_converts_a_transformers_folder_once(tiny_model_dir, tmp_path, monkeypatch):
    from whisper_finetune.models.resolve import resolve_model

    monkeypatch.setenv("WHISPER_FINETUNE_HOME", str(tmp_path / "home"))
    first = Path(resolve_model(tiny_model_dir, "ct2"))
    assert first.is_relative_to(tmp_path / "home")
    for name in ("model.bin", "tokenizer.json", "preprocessor_config.json"):
        assert (first / name).is_file(), name
    stamp = (first / "model.bin").stat().st_mtime_ns
    assert Path(resolve_model(tiny_model_dir, "ct2")) == first
    assert (first / "model.bin").stat().st_mtime_ns == stamp
