"""``prepare pseudo-label``: a teacher's two decodes, what is kept and why each drop."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from finetune_data import CLIPS, write_manifest

from whisper_finetune.data.recipes.pseudolabel import (
    PseudoLabelConfig,
    audio_records,
    pseudo_label,
)


class Teacher:
    """Answers per clip index (by length) from two tables: greedy and beam."""

    def __init__(self, greedy, beam):
        self.answers = {1: greedy, 5: beam}

    def transcribe_batch(self, clips, options):
        table = self.answers[options.beam_size]
        return [SimpleNamespace(text=table[round(c.size / 16000 * 2)]) for c in clips]


def test_kept_clips_and_the_reason_for_every_drop(tmp_path):
    # clip lengths 1.5, 2.0, 2.5, 1.0, 1.5 s -> keys 3, 4, 5, 2, 3 (two share 3)
    folder = tmp_path / "audio"
    write_manifest(folder, clips=CLIPS[:5])
    greedy = {3: "今天天气很好", 4: "完全不同的句子", 5: "我们去学校", 2: ""}
    beam = {3: "今天天气很好。", 4: "今天天气很好", 5: "我们去学校吧", 2: ""}
    cfg = PseudoLabelConfig(
        audio=str(folder), output=str(tmp_path / "replay.jsonl"), max_disagreement=0.2
    )
    options = SimpleNamespace(beam_size=1), SimpleNamespace(beam_size=5)
    result = pseudo_label(cfg, Teacher(greedy, beam), *options, teacher="fake")
    assert result.kept == 3  # the two 1.5 s clips and the 2.5 s one (1 of 6 characters off)
    assert result.dropped == {"disagreement": 1, "empty": 1}
    lines = [json.loads(x) for x in result.manifest.read_text(encoding="utf-8").splitlines()]
    assert [x["sentence"] for x in lines] == ["今天天气很好。", "我们去学校吧", "今天天气很好。"]
    assert all(x["pseudo_label"] is True and x["teacher"] == "fake" for x in lines)
    report = json.loads(result.report.read_text(encoding="utf-8"))
    assert report["clips"] == 5 and report["kept"] == 3
    reasons = {Path(v["audio"]).name: v["reason"] for v in report["clips_detail"] if not v["kept"]}
    assert reasons == {
        "clip1.wav": "greedy and beam disagree: CER 1.167 > 0.2",
        "clip3.wav": "a transcript is empty",
    }
    with pytest.raises(FileExistsError, match="--overwrite"):
        pseudo_label(cfg, Teacher(greedy, beam), *options)


def test_loops_and_impossible_rates_are_dropped(tmp_path):
    folder = tmp_path / "audio"
    write_manifest(folder, clips=CLIPS[:2])  # 1.5 s and 2.0 s
    loop = "你不想要我" * 20
    answers = {3: loop, 4: "今" * 40}  # 100 characters in 1.5 s; 40 in 2 s = 20 a second
    cfg = PseudoLabelConfig(audio=str(folder), output=str(tmp_path / "r.jsonl"))
    r = pseudo_label(
        cfg, Teacher(answers, answers), SimpleNamespace(beam_size=1), SimpleNamespace(beam_size=5)
    )
    assert r.kept == 0 and r.dropped == {"repetition": 2}
    cfg = PseudoLabelConfig(
        audio=str(folder), output=str(tmp_path / "s.jsonl"), max_compression_ratio=100
    )
    r = pseudo_label(
        cfg, Teacher(answers, answers), SimpleNamespace(beam_size=1), SimpleNamespace(beam_size=5)
    )
    assert r.dropped == {"rate": 2}


def test_audio_comes_from_a_folder_or_an_unlabelled_manifest(tmp_path):
    manifest = tmp_path / "m.jsonl"
    write_manifest(tmp_path, clips=CLIPS[:2], name="labelled.jsonl")
    manifest.write_text(
        '{"audio": {"path": "clip0.wav"}}\n{"audio": {"path": "clip1.wav"}, "sentence": ""}\n'
    )
    records = audio_records(manifest)
    assert [Path(r.audio_path).name for r in records] == ["clip0.wav", "clip1.wav"]
    assert records[0].origin == f"{manifest}:1"
    manifest.write_text('{"audio": {}}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:1: field 'audio.path'"):
        audio_records(manifest)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a manifest"):
        audio_records(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        audio_records(tmp_path / "empty")
    with pytest.raises(ValueError, match="--beam_size must be >= 2"):
        PseudoLabelConfig(audio="a", output="b", beam_size=1)


def test_the_command_labels_with_the_tiny_model_and_writes_both_files(
    tiny_model_dir, tmp_path, capsys
):
    from whisper_finetune.cli import main

    write_manifest(tmp_path / "audio", clips=CLIPS[:2])
    out = tmp_path / "replay.jsonl"
    code = main(
        [
            "prepare",
            "pseudo-label",
            f"--audio={tmp_path / 'audio'}",
            f"--output={out}",
            f"--model_path={tiny_model_dir}",
            "--beam_size=2",
            "--max_disagreement=1.0",
            "--max_new_tokens=6",
        ]
    )
    assert code == 0
    report = json.loads(out.with_name("replay.jsonl.report.json").read_text(encoding="utf-8"))
    assert report["clips"] == 2 and report["teacher"].startswith(str(tiny_model_dir))
    assert report["kept"] + sum(report["dropped"].values()) == 2
    assert all(v["kept"] or v["reason"] for v in report["clips_detail"])
    assert f"of 2 clips -> {out}" in capsys.readouterr().out
