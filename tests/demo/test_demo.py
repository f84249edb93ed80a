"""The demo's whole road, in miniature: tiny random Whisper, a few synthetic clips, 2 steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from whisper_finetune.demo.demo import DemoConfig, run_demo

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")


def test_demo_runs_every_stage_and_writes_the_report(tiny_model_dir, test_wav, tmp_path, capsys):
    cfg = DemoConfig(
        base_model=str(tiny_model_dir),
        real_data=str(test_wav.parent / "test.json"),
        output_dir=str(tmp_path / "demo"),
        num_train=8,
        num_test=2,
        max_steps=2,
        per_device_train_batch_size=2,
        merge_scales=(1.0, 0.5),
        max_new_tokens=8,
    )
    report = run_demo(cfg)
    out = tmp_path / "demo"
    # every stage ran and was timed
    assert list(report.stage_seconds) == ["corpus", "pack", "baseline", "finetune", "merge", "convert", "evaluate"]
    # base and fine-tuned, both backends, both test sets
    keys = {(m.stage, m.backend, m.dataset) for m in report.measurements}
    assert len(keys) == 8
    assert all(m.n_utts > 0 and m.rtf > 0 for m in report.measurements)
    # artifacts: merged model, CTranslate2 model, report with plots, per-utterance results
    assert (out / "merged" / "model.safetensors").is_file()
    assert (out / "ct2-int8" / "model.bin").is_file()
    assert (out / "ct2-int8" / "preprocessor_config.json").is_file()
    for name in ("report.md", "loss.png", "cer.png", "rtf.png"):
        assert (out / "report" / name).is_file(), name
    utterances = (out / "eval" / "fine-tuned-test split-ct2" / "utterances.jsonl").read_text().splitlines()
    assert len(utterances) == 2 and "hypothesis" in json.loads(utterances[0])
    assert report.log_history and any("loss" in h for h in report.log_history)
    assert "merge scale chosen by the real-speech guard" in " ".join(report.notes)
    assert "total time" in capsys.readouterr().out


def test_demo_refuses_a_non_empty_output_dir(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        run_demo(DemoConfig(output_dir=str(tmp_path)))
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_public_api_is_lazy_and_complete():
    code = (
        "import sys, whisper_finetune as w; assert 'torch' not in sys.modules; "
        "[getattr(w, n) for n in w.__all__]; print('ok')"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "ok"
