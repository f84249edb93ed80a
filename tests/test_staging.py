"""The rule for replacing a folder, and output locations checked before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisper_finetune.staging import (
    MARKER_FILE,
    UnsafeOutputError,
    check_output_dir,
    check_output_file,
    check_replaceable,
    write_marker,
)


def _model(folder, marker=True):
    folder.mkdir(parents=True)
    for name in ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt"):
        (folder / name).write_text("{}")
    if marker:
        write_marker(folder, "model")
    return folder


def test_missing_or_empty_folders_may_be_written(tmp_path):
    check_replaceable(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty")


def test_an_earlier_model_of_ours_may_be_replaced(tmp_path):
    check_replaceable(_model(tmp_path / "ct2"))
    # folders written before the marker had a kind: convert's and merge's provenance
    old = _model(tmp_path / "old", marker=False)
    (old / MARKER_FILE).write_text(json.dumps({"format": "ctranslate2"}))
    check_replaceable(old)


@pytest.mark.parametrize("where", ["same", "parent", "grandparent"])
def test_a_folder_that_is_or_contains_the_source_is_refused(tmp_path, where):
    src = _model(tmp_path / "a" / "b" / "src")
    dst = {"same": src, "parent": src.parent, "grandparent": tmp_path / "a"}[where]
    with pytest.raises(UnsafeOutputError, match="would delete the input"):
        check_replaceable(dst, sources=(src,))


def test_foreign_files_are_listed_and_refused(tmp_path):
    folder = _model(tmp_path / "m")
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UnsafeOutputError, match=r"holds notes\.txt.*nothing was changed"):
        check_replaceable(folder)
    # a model folder of someone else's (no marker) is not ours either
    with pytest.raises(UnsafeOutputError, match="not a model folder written by whisper-finetune"):
        check_replaceable(_model(tmp_path / "theirs", marker=False))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnsafeOutputError, match="not a folder"):
        check_replaceable(tmp_path / "file")


def test_evaluation_demo_and_pack_folders(tmp_path):
    ev = tmp_path / "eval"
    ev.mkdir()
    for name in ("summary.json", "utterances.jsonl", "utterances.rank1-of-2.jsonl"):
        (ev / name).write_text("")
    check_replaceable(ev, kind="evaluation")
    (ev / "test.jsonl").write_text("")
    with pytest.raises(UnsafeOutputError, match=r"holds test\.jsonl"):
        check_replaceable(ev, kind="evaluation")

    demo = tmp_path / "demo"
    (demo / "train").mkdir(parents=True)
    with pytest.raises(UnsafeOutputError, match="not a demo output folder"):
        check_replaceable(demo, kind="demo")  # a folder named train is no proof
    write_marker(demo, "demo")
    check_replaceable(demo, kind="demo")

    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / "window-000000.wav").write_bytes(b"")
    check_replaceable(packed, kind="pack")
    (packed / "utt1.wav").write_bytes(b"")
    with pytest.raises(UnsafeOutputError, match=r"utt1\.wav"):
        check_replaceable(packed, kind="pack")


def test_output_locations(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(UnsafeOutputError, match="is a folder; a file name is expected"):
        check_output_file(tmp_path / "adir")
    with pytest.raises(UnsafeOutputError, match="afile is a file, not a folder"):
        check_output_file(tmp_path / "afile" / "out.json")
    with pytest.raises(UnsafeOutputError, match="is a file; a folder is expected"):
        check_output_dir(tmp_path / "afile")
    with pytest.raises(UnsafeOutputError, match="afile is a file, not a folder"):
        check_output_dir(tmp_path / "afile" / "sub")
    check_output_file(tmp_path / "new" / "deeper" / "out.json")
    check_output_dir(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_unwritable_folders_are_refused(tmp_path):
    import os

    # /proc refuses new files even to root: what a read-only mount does
    with pytest.raises(UnsafeOutputError, match="cannot write in /proc"):
        check_output_file("/proc/whisper-finetune-out.json")
    with pytest.raises(UnsafeOutputError, match="cannot write in /proc"):
        check_output_dir("/proc/whisper-finetune-eval")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if not os.access(ro, os.W_OK):  # permission bits do not bind root
            with pytest.raises(UnsafeOutputError, match="not writable"):
                check_output_file(ro / "out.json")
    finally:
        ro.chmod(0o755)


def test_output_lock_goes_inside_a_folder_whose_parent_cannot_be_written(tmp_path, monkeypatch):
    """Issue 27.4's lock: beside the folder, or inside it where the parent is read-only
    (simulated: the tests run as root, for whom every folder is writable)."""
    import os

    from whisper_finetune import staging

    run = tmp_path / "run"
    run.mkdir()
    assert staging.lock_path(run) == tmp_path / ".run.lock"
    real = os.access
    monkeypatch.setattr(staging.os, "access", lambda p, mode: Path(p) != tmp_path and real(p, mode))
    assert staging.lock_path(run) == run / staging.INNER_LOCK
    held = rf"{run} is being written by another run \(pid {os.getpid()}"
    with (
        staging.output_lock(run),
        pytest.raises(staging.UnsafeOutputError, match=held),
        staging.output_lock(run),  # a second run
    ):
        pass
    assert list(run.iterdir()) == []  # removed when the run ends
