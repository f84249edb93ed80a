"""``evaluate`` and ``infer`` over many records: checks before the model, results kept on failure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from whisper_finetune.cli import main
from whisper_finetune.data.audio import SAMPLE_RATE, write_wav
from whisper_finetune.evaluation.evaluate import EvalConfig, EvalDataError, EvalInterrupted
from whisper_finetune.evaluation.run import EvalJob, run_evaluation
from whisper_finetune.inference.transcript import DEFAULT_OPTIONS, Transcript


class Echo:
    """Answers 你好 for every clip; fails on call number ``fail_at`` (1-based)."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at, self.calls = fail_at, 0

    def transcribe(self, audio, options=DEFAULT_OPTIONS):
        return self.transcribe_batch([audio], options)[0]

    def transcribe_batch(self, audios, options=DEFAULT_OPTIONS):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("CUDA out of memory (simulated)")
        return [Transcript("你好", options.language, len(a) / SAMPLE_RATE) for a in audios]


def _no_model(**_kwargs):
    raise AssertionError("the model was loaded before the checks")


def _corpus(tmp_path: Path, rows: list[dict]) -> Path:
    """Five 1 s wavs and a manifest of ``rows`` (paths relative to the manifest)."""
    for i in range(5):
        write_wav(tmp_path / f"{i}.wav", np.zeros(SAMPLE_RATE, np.float32))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + b"\x00" * 40)
    path = tmp_path / "test.jsonl"
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


GOOD = [{"audio": {"path": f"{i}.wav"}, "sentence": "你好"} for i in range(5)]
BAD = [
    {"audio": {"path": "missing.wav"}, "sentence": "你好"},
    {"audio": {"path": "corrupt.wav"}, "sentence": "你好"},
    {
        "audio": {"path": "1.wav", "start_time": 0.2, "end_time": 4.0},
        "sentence": "你好",
    },  # past the end
    {"audio": {"path": "2.wav", "start_time": 3.0}, "sentence": "你好"},  # starts after the end
]


def test_every_bad_record_is_listed_before_the_model_loads(tmp_path, capsys, monkeypatch):
    manifest = _corpus(tmp_path, GOOD[:2] + BAD[:2] + GOOD[2:] + BAD[2:])
    monkeypatch.setattr("whisper_finetune.inference.loader.load_transcriber", _no_model)
    out = tmp_path / "eval"
    assert main(["evaluate", f"--test_data={manifest}", f"--output_dir={out}"]) == 1
    err = capsys.readouterr().err
    assert "4 of 9 records cannot be evaluated" in err and "--skip_bad_samples" in err
    for line, what in (
        (3, "file not found"),
        (4, "does not decode"),
        (8, "audio.end_time"),
        (9, "audio.start_time"),
    ):
        assert f"test.jsonl:{line}: {what}" in err.replace("audio.path: ", ""), err
    assert not out.exists()


def test_end_time_past_the_file_is_not_scored(tmp_path):
    """Issue 10.6: evaluate scored a record that `prepare validate` rejects."""
    manifest = _corpus(tmp_path, [BAD[2]])
    with pytest.raises(
        EvalDataError, match=r"test\.jsonl:1: audio\.end_time: 4\.00 s is beyond the end"
    ):
        run_evaluation(EvalJob(str(manifest), EvalConfig(progress=False)), _no_model)


def test_skip_bad_samples_scores_the_rest_and_lists_the_skipped(tmp_path):
    manifest = _corpus(tmp_path, GOOD[:2] + BAD + GOOD[2:])
    job = EvalJob(
        str(manifest),
        EvalConfig(progress=False),
        output_dir=str(tmp_path / "eval"),
        skip_bad_samples=True,
    )
    report, extra = run_evaluation(job, lambda **kw: Echo())
    assert report.n_utts == 5 and report.value == 0.0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["n_skipped"] == 4 and summary["n_utts"] == 5
    assert [s["origin"].rsplit(":", 1)[1] for s in summary["skipped"]] == ["3", "4", "5", "6"]
    assert "file not found" in summary["skipped"][0]["problems"][0]
    lines = (tmp_path / "eval" / "utterances.jsonl").read_text().splitlines()
    assert [json.loads(x)["origin"].rsplit(":", 1)[1] for x in lines] == ["1", "2", "7", "8", "9"]


def test_a_late_failure_keeps_the_results_so_far_and_says_where(tmp_path):
    manifest = _corpus(tmp_path, GOOD)
    out = tmp_path / "eval"
    (out).mkdir()
    (out / "summary.json").write_text('{"value": 0.01}')  # an earlier run's: must not stay
    job = EvalJob(str(manifest), EvalConfig(batch_size=2, progress=False), output_dir=str(out))
    with pytest.raises(EvalInterrupted) as info:
        run_evaluation(job, lambda **kw: Echo(fail_at=3))
    message = str(info.value)
    assert (
        "CUDA out of memory" in message
        and f"4 utterance(s) scored before it are in {out / 'utterances.jsonl'}" in message
    )
    lines = (out / "utterances.jsonl").read_text().splitlines()
    assert [json.loads(x)["hypothesis"] for x in lines] == ["你好"] * 4
    assert not (out / "summary.json").exists()


def test_without_output_dir_the_results_so_far_are_still_on_disk(tmp_path):
    manifest = _corpus(tmp_path, GOOD)
    job = EvalJob(str(manifest), EvalConfig(batch_size=2, progress=False))
    with pytest.raises(
        EvalInterrupted, match=r"2 utterance\(s\) scored before it are in (\S+)"
    ) as info:
        run_evaluation(job, lambda **kw: Echo(fail_at=2))
    path = Path(str(info.value).rsplit(" are in ", 1)[1])
    try:
        assert len(path.read_text().splitlines()) == 2
    finally:
        path.unlink()


@pytest.mark.parametrize("case", ["file", "foreign", "data_folder"])
def test_evaluate_output_dir_is_checked_before_the_model_loads(tmp_path, capsys, monkeypatch, case):
    manifest = _corpus(tmp_path / "data", GOOD) if (tmp_path / "data").mkdir() is None else None
    monkeypatch.setattr("whisper_finetune.inference.loader.load_transcriber", _no_model)
    out = {
        "file": tmp_path / "out.txt",
        "foreign": tmp_path / "mine",
        "data_folder": tmp_path / "data",
    }[case]
    if case == "file":
        out.write_text("not a folder")
    elif case == "foreign":
        out.mkdir()
        (out / "notes.md").write_text("mine")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["evaluate", f"--test_data={manifest}", f"--output_dir={out}"]) == 1
    err = capsys.readouterr().err
    expected = {
        "file": "is a file; a folder is expected",
        "foreign": "holds notes.md",
        "data_folder": "contains the input",
    }
    assert expected[case] in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("case", ["folder", "under_a_file", "the_input"])
def test_infer_output_file_is_checked_before_the_model_loads(
    tmp_path, test_wav, capsys, monkeypatch, case
):
    monkeypatch.setattr("whisper_finetune.inference.loader.load_transcriber", _no_model)
    (tmp_path / "afile").write_text("x")
    audio = tmp_path / "a.wav"
    audio.write_bytes(test_wav.read_bytes())
    out = {"folder": tmp_path, "under_a_file": tmp_path / "afile" / "out.json", "the_input": audio}[
        case
    ]
    assert main(["infer", f"--audio_path={audio}", f"--output_file={out}"]) == 1
    err = capsys.readouterr().err
    expected = {
        "folder": "is a folder; a file name is expected",
        "under_a_file": "afile is a file, not a folder",
        "the_input": "writing it would replace the input",
    }
    assert expected[case] in err
    assert audio.read_bytes() == test_wav.read_bytes()


def test_infer_over_a_folder_and_a_manifest(tmp_path, capsys, monkeypatch):
    manifest = _corpus(tmp_path, GOOD[:3])
    (tmp_path / "corrupt.wav").unlink()
    monkeypatch.setattr("whisper_finetune.inference.loader.load_transcriber", lambda **kw: Echo())
    assert main(["infer", f"--audio_path={tmp_path}", "--output_format=txt"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [Path(x.split("\t")[0]).name for x in lines] == [f"{i}.wav" for i in range(5)]
    out = tmp_path / "out" / "t.jsonl"
    assert main(["infer", f"--audio_path={manifest}", f"--output_file={out}"]) == 0
    items = [json.loads(x) for x in out.read_text().splitlines()]
    assert [Path(i["audio"]).name for i in items] == ["0.wav", "1.wav", "2.wav"]
    assert all(i["text"] == "你好" for i in items)
    assert not list(out.parent.glob("*.partial"))
    assert main(["infer", f"--audio_path={manifest}", "--output_format=srt"]) == 1
    assert "needs one audio file" in capsys.readouterr().err
    before = manifest.read_bytes()
    assert main(["infer", f"--audio_path={manifest}", f"--output_file={manifest}"]) == 1
    assert "writing it would replace the input" in capsys.readouterr().err
    assert manifest.read_bytes() == before


def test_infer_over_a_manifest_keeps_finished_transcripts_on_failure(tmp_path, capsys, monkeypatch):
    manifest = _corpus(tmp_path, GOOD[:3])
    monkeypatch.setattr(
        "whisper_finetune.inference.loader.load_transcriber", lambda **kw: Echo(fail_at=3)
    )
    out = tmp_path / "t.jsonl"
    assert main(["infer", f"--audio_path={manifest}", f"--output_file={out}"]) == 1
    err = capsys.readouterr().err
    partial = tmp_path / "t.jsonl.rank0-of-1.partial"
    assert (
        f"test.jsonl:3: RuntimeError: CUDA out of memory (simulated); the 2 transcript(s) finished before it are in {partial}"
        in err
    )
    assert len(partial.read_text().splitlines()) == 2 and not out.exists()


def test_a_json_list_manifest_is_checked_and_skipped_by_item(tmp_path):
    _corpus(tmp_path, [])
    path = tmp_path / "test.json"
    path.write_text(
        json.dumps([GOOD[0], BAD[0], GOOD[1]], ensure_ascii=False, indent=2), encoding="utf-8"
    )
    with pytest.raises(
        EvalDataError,
        match=r"1 of 3 records.*\n  \S+test\.json: item 2: audio\.path: file not found",
    ):
        run_evaluation(EvalJob(str(path), EvalConfig(progress=False)), _no_model)
    report, extra = run_evaluation(
        EvalJob(str(path), EvalConfig(progress=False), skip_bad_samples=True), lambda **kw: Echo()
    )
    assert report.n_utts == 2 and extra["skipped"][0]["origin"].endswith("item 2")
