"""``demo --overwrite`` replaces only an earlier demo's folder (no espeak-ng needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisper_finetune.cli import main
from whisper_finetune.demo.demo import DemoConfig, run_demo
from whisper_finetune.staging import UnsafeOutputError


def test_demo_overwrite_refuses_a_folder_that_is_not_a_demo(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("three years")
    (tmp_path / "train").mkdir()  # a name the demo uses proves nothing
    assert main(["demo", f"--output_dir={tmp_path}", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "thesis.tex" in err and "not a demo output folder" in err
    assert (tmp_path / "thesis.tex").read_text() == "three years"


def test_demo_overwrite_never_deletes_its_own_input(tmp_path):
    out = tmp_path / "demo"
    data = out / "corpus"
    data.mkdir(parents=True)
    (out / "whisper_finetune.json").write_text('{"kind": "demo"}')  # an earlier demo...
    (data / "test.jsonl").write_text("")  # ...whose corpus is this run's test data
    cfg = DemoConfig(
        output_dir=str(out),
        overwrite=True,
        train_data=str(data / "test.jsonl"),
        test_data=str(data / "test.jsonl"),
    )
    with pytest.raises(UnsafeOutputError, match="would delete the input"):
        run_demo(cfg)
    assert (data / "test.jsonl").is_file()


def test_a_demo_folder_with_the_package_guard_is_replaced_by_the_next_demo(tmp_path):
    # every entry the demo writes must be one --overwrite recognises: the package guard's
    # manifest (out/guard) left an interrupted demo's folder that no later demo could replace
    from whisper_finetune.demo.recipe import resolve_guard_data
    from whisper_finetune.staging import check_replaceable, write_marker

    out = tmp_path / "demo"
    out.mkdir()
    write_marker(out, "demo")
    cfg = resolve_guard_data(DemoConfig(output_dir=str(out)), out)
    assert Path(cfg.guard_data).is_file() and Path(cfg.guard_data).parent == out / "guard"
    check_replaceable(out, kind="demo")  # raises UnsafeOutputError if "guard" is not ours
