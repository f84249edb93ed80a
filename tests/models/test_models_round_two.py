"""Issue 27 (round two), models: folders that are not whole are named, not half-used."""

from __future__ import annotations

import pytest

from whisper_finetune.cli import main


@pytest.mark.parametrize("damage", ["missing", "broken"])
def test_import_ct2_needs_a_readable_config_json(tmp_path, capsys, damage):
    """27.12: without config.json the import made an 'English-only' model; 27.15: broken
    JSON in it did not name the file. Both are found before model.bin is read."""
    src = tmp_path / "ct2"
    src.mkdir()
    (src / "model.bin").write_bytes(b"not read")
    (src / "tokenizer.json").write_text("{}", encoding="utf-8")
    if damage == "broken":
        (src / "config.json").write_text('{"lang_ids": [50259,', encoding="utf-8")
    assert main(["models", "import-ct2", str(src), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    expected = {
        "missing": f"{src} is not a CTranslate2 Whisper folder: config.json is missing",
        "broken": f"{src / 'config.json'}: not valid JSON",
    }[damage]
    assert expected in err, err
    assert not (tmp_path / "out").exists()


def test_a_whisper_cpp_folder_with_two_model_files_names_them(tmp_path):
    """27.15: it said the folder 'holds no Whisper model'."""
    import struct

    from whisper_finetune.models.ggml_check import GGML_MAGIC
    from whisper_finetune.models.resolve import resolve_ggml

    folder = tmp_path / "cpp"
    folder.mkdir()
    for name in ("ggml-model.bin", "ggml-model-q8_0.bin"):
        (folder / name).write_bytes(struct.pack("<I", GGML_MAGIC) + b"\0" * 64)
    with pytest.raises(ValueError, match=r"holds 2 whisper\.cpp model files") as err:
        resolve_ggml(str(folder))
    assert "ggml-model.bin" in str(err.value) and "ggml-model-q8_0.bin" in str(err.value)
