"""Issue 27 (round two), the data side: outputs that would replace inputs, late or
unnamed errors, records that pass unremarked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
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
    return {"audio": {"path": audio}, "sentence": sentence, "duration": 1.0, **extra}


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


# ------------------------------------------------ 27.11: found by validate, not later


def test_an_unknown_language_is_named_with_its_line_before_the_model_loads(tmp_path, capsys):
    from whisper_finetune.data.manifest import ManifestError
    from whisper_finetune.evaluation.evaluate import EvalConfig
    from whisper_finetune.evaluation.run import EvalJob, run_evaluation

    write_tone(tmp_path / "a.wav", 1.0)
    rows = [
        record("a.wav"),
        record("a.wav", "再见", language="xx"),
        record("a.wav", language="Chinese"),
    ]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    assert main(["prepare", "validate", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "m.jsonl:2: " in out and "'xx' is not a Whisper language" in out
    assert "m.jsonl:3" not in out  # a language name is fine

    def no_model(**_kwargs):
        raise AssertionError("the model was loaded before the checks")

    # a field error, like a missing sentence: the line is named before any model loads
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: .*'xx' is not a Whisper language"):
        run_evaluation(EvalJob(str(manifest), EvalConfig(progress=False)), no_model)


def test_pack_refuses_a_slice_that_ends_beyond_its_file(tmp_path, capsys):
    write_tone(tmp_path / "a.wav", 2.0)
    rows = [
        record("a.wav", "你好"),
        {"audio": {"path": "a.wav", "start_time": 1.0, "end_time": 5.0}, "sentence": "再见"},
    ]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    out = tmp_path / "packed.jsonl"
    assert main(["prepare", "pack", f"--manifest={manifest}", f"--output={out}"]) == 1
    err = capsys.readouterr().err
    assert "m.jsonl:2" in err and "beyond the end of the file" in err
    assert not out.exists()


# ------------------------------------- 27.13 (and 27.15): prepare folder names the file


def _folder(root: Path, names=("a", "b", "c")) -> Path:
    for name in names:
        write_tone(root / f"{name}.wav", 1.0)
    return root


def test_a_transcript_that_is_not_utf8_is_named_and_skippable(tmp_path, capsys):
    root = _folder(tmp_path / "mine")
    for name in ("a", "b"):
        (root / f"{name}.txt").write_text("你好", encoding="utf-8")
    (root / "c.txt").write_bytes("你好".encode("gbk"))
    assert (
        main(["prepare", "folder", f"--input_dir={root}", f"--target_dir={tmp_path / 'o1'}"]) == 1
    )
    err = capsys.readouterr().err
    assert "transcript not UTF-8 (1): c.txt" in err
    args = [
        "prepare",
        "folder",
        f"--input_dir={root}",
        f"--target_dir={tmp_path / 'o2'}",
        "--skip_problems",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "transcript not UTF-8: 1" in out
    assert sum(1 for p in (tmp_path / "o2").glob("*.jsonl") for _ in p.open()) == 2


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "metadata.jsonl",
            '{"file_name": "a.wav", "text": "你好"}\n["b.wav", "你好"]\n',
            "metadata.jsonl:2: not a JSON object",
        ),
        (
            "metadata.jsonl",
            '{"file_name": "a.wav", "text": "你好"}\n{"file_name": \n',
            "metadata.jsonl:2: invalid JSON",
        ),
        (
            "metadata.csv",
            "file_name,text\n",
            "metadata.csv lists no recordings (a header and no rows)",
        ),
        ("metadata.csv", "", "metadata.csv is empty"),
        (
            "metadata.csv",
            "file_name,text\na.wav,\xff\n".encode("latin-1"),
            "metadata.csv: not UTF-8",
        ),
    ],
)
def test_a_bad_metadata_file_is_named_with_its_line(tmp_path, capsys, name, content, expected):
    root = _folder(tmp_path / "mine")
    meta = root / name
    if isinstance(content, bytes):
        meta.write_bytes(content)
    else:
        meta.write_text(content, encoding="utf-8")
    assert main(["prepare", "folder", f"--input_dir={root}", f"--target_dir={tmp_path / 'o'}"]) == 1
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err


# ----------------------------------------------------- 27.15: the smaller ones, data


def test_a_folder_or_a_device_is_named_as_such_not_as_missing(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    for path, expected in (
        (tmp_path / "clips", "is a folder, not a file"),
        (Path("/dev/zero"), "is not a regular file"),
    ):
        assert main(["prepare", "validate", str(path)]) == 1
        assert f"manifest {path} {expected}" in capsys.readouterr().err
        assert main(["evaluate", f"--test_data={path}"]) == 1
        assert f"manifest {path} {expected}" in capsys.readouterr().err
    manifest = write_jsonl(tmp_path / "m.jsonl", [record("clips")])
    assert main(["prepare", "validate", str(manifest)]) == 1
    assert (
        "m.jsonl:1: audio.path: " in (out := capsys.readouterr().out)
        and "is a folder, not a file" in out
    )


def test_a_deeply_nested_line_names_the_file_and_line(tmp_path):
    from whisper_finetune.data.manifest import ManifestError, read_manifest

    write_tone(tmp_path / "a.wav", 1.0)
    deep = (
        '{"audio": {"path": "a.wav"}, "sentence": "x", "extra": '
        + "[" * 100000
        + "]" * 100000
        + "}"
    )
    manifest = write_jsonl(tmp_path / "m.jsonl", [record("a.wav"), deep])
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: .*nested too deeply"):
        read_manifest(manifest)


def test_exact_duplicate_records_are_reported(tmp_path, capsys):
    write_tone(tmp_path / "a.wav", 1.0)
    write_tone(tmp_path / "b.wav", 1.0)
    rows = [record("a.wav"), record("b.wav"), record("a.wav")]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    assert main(["prepare", "validate", str(manifest)]) == 1
    assert "m.jsonl:3: record: the same record as line 1" in capsys.readouterr().out
    assert (
        main(["prepare", "pack", f"--manifest={manifest}", f"--output={tmp_path / 'p.jsonl'}"]) == 1
    )
    assert f"m.jsonl:3: the same record as {manifest}:1" in capsys.readouterr().err


def test_pack_keeps_every_window_within_448_label_tokens(tmp_path):
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.data.recipes.pack import PackConfig, pack_manifest
    from whisper_finetune.data.recipes.validate import label_tokens, load_token_counter

    text = "而对楼市成交抑制作用最大的限购政策" * 4  # 68 characters in 1 s: fast talk
    rows = []
    for i in range(12):
        write_tone(tmp_path / f"{i}.wav", 1.0)
        rows.append(record(f"{i}.wav", text))
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    result = pack_manifest(PackConfig(manifest=str(manifest), output=str(tmp_path / "p.jsonl")))
    count, _ = load_token_counter("embedded:whisper-base")
    windows = read_manifest(result.output)
    needed = [label_tokens(w, count) for w in windows]
    assert max(needed) <= 448 and result.n_windows >= 2, needed
    assert sum(len(w.sentences) for w in windows) == 12  # every utterance packed once


def test_a_second_pack_or_folder_run_into_the_same_output_fails_at_once(tmp_path, capsys):
    """27.4's rule for the data commands: one writer per output."""
    import os

    from whisper_finetune.staging import output_lock

    root = _folder(tmp_path / "mine")
    for name in ("a", "b", "c"):
        (root / f"{name}.txt").write_text("你好", encoding="utf-8")
    out = tmp_path / "out"
    with output_lock(out):  # another run holds it (flock: per open file, so this counts)
        assert main(["prepare", "folder", f"--input_dir={root}", f"--target_dir={out}"]) == 1
        assert (
            f"--target_dir {out} is being written by another run (pid {os.getpid()}"
            in capsys.readouterr().err
        )
    assert not out.exists()
    assert main(["prepare", "folder", f"--input_dir={root}", f"--target_dir={out}"]) == 0
    packed = tmp_path / "packed.jsonl"
    with output_lock(packed):
        assert (
            main(["prepare", "pack", f"--manifest={out / 'train.jsonl'}", f"--output={packed}"])
            == 1
        )
        assert f"--output {packed} is being written by another run" in capsys.readouterr().err
    assert not packed.exists()
