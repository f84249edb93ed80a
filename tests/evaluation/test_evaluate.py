"""Evaluation through the Transcriber protocol: scoring, reports, data errors, CLI parity."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from whisper_finetune.data.audio import SAMPLE_RATE, load_audio, write_wav
from whisper_finetune.data.manifest import read_manifest
from whisper_finetune.evaluation.evaluate import EvalConfig, EvalDataError, evaluate, write_report
from whisper_finetune.evaluation.metrics import score
from whisper_finetune.inference.transcript import DEFAULT_OPTIONS, DecodeOptions, Transcript
from whisper_finetune.text import normalize_text


class FakeTranscriber:
    """Answers by clip length (in samples); records each batch call."""

    def __init__(self, answers: dict[int, str]):
        self.answers = answers
        self.calls: list[tuple[int, str | None]] = []

    def transcribe(self, audio, options=DEFAULT_OPTIONS):
        return self.transcribe_batch([audio], options)[0]

    def transcribe_batch(self, audios, options=DEFAULT_OPTIONS):
        self.calls.append((len(audios), options.language))
        return [
            Transcript(self.answers[len(a)], options.language, len(a) / SAMPLE_RATE) for a in audios
        ]


def _manifest(tmp_path, rows) -> list:
    path = tmp_path / "test.jsonl"
    lines = []
    for i, (seconds, sentence, extra) in enumerate(rows):
        wav = write_wav(tmp_path / f"{i}.wav", np.zeros(int(seconds * SAMPLE_RATE), np.float32))
        lines.append(json.dumps({"audio": {"path": wav.name}, "sentence": sentence, **extra}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return read_manifest(path)


def test_corpus_score_is_total_errors_over_total_units(tmp_path):
    records = _manifest(tmp_path, [(1, "你好世界", {}), (2, "今天天氣很好。", {}), (3, "好", {})])
    fake = FakeTranscriber({16000: "你好,世界", 32000: "今天天气不好", 48000: "好好"})
    report = evaluate(fake, records, EvalConfig(batch_size=2, progress=False))
    assert [u.errors for u in report.utterances] == [0, 1, 1]
    assert (report.errors, report.n_ref_units, report.n_utts) == (2, 11, 3)
    assert report.value == pytest.approx(2 / 11)
    refs = [normalize_text(r.sentence) for r in records]
    hyps = [normalize_text(h) for h in ("你好,世界", "今天天气不好", "好好")]
    assert report.value == score(refs, hyps, "cer")
    assert fake.calls == [(2, "zh"), (1, "zh")]
    assert report.audio_seconds == pytest.approx(6.0)
    assert report.utterances[1].reference_normalized == "今天天气很好"


def test_normalization_switches_and_wer(tmp_path):
    records = _manifest(tmp_path, [(1, "Hello, World!", {})])
    fake = FakeTranscriber({16000: "hello world"})
    config = EvalConfig(metric="wer", progress=False, decode=DecodeOptions(language="en"))
    assert evaluate(fake, records, config).value == 0.0
    raw = evaluate(fake, records, replace(config, remove_punctuation=False))
    assert raw.utterances[0].reference_normalized == "hello, world!"
    assert raw.value == 1.0


def test_a_records_language_overrides_the_default(tmp_path):
    records = _manifest(
        tmp_path, [(1, "你好", {}), (2, "hello", {"language": "en"}), (3, "好", {})]
    )
    fake = FakeTranscriber({16000: "你好", 32000: "hello", 48000: "好"})
    report = evaluate(fake, records, EvalConfig(batch_size=8, progress=False))
    assert sorted(fake.calls) == [(1, "en"), (2, "zh")]
    assert [u.language for u in report.utterances] == ["zh", "en", "zh"]
    assert report.value == 0.0


def test_unreadable_audio_names_the_manifest_line(tmp_path):
    records = _manifest(tmp_path, [(1, "你好", {}), (1, "世界", {})])
    (tmp_path / "1.wav").unlink()
    fake = FakeTranscriber({16000: "你好"})
    with pytest.raises(EvalDataError, match=r"test\.jsonl:2.*1\.wav"):
        evaluate(fake, records, EvalConfig(progress=False))


def test_report_files(tmp_path):
    records = _manifest(tmp_path, [(1, "你好", {})])
    report = evaluate(FakeTranscriber({16000: "你们"}), records, EvalConfig(progress=False))
    summary_path, utts_path = write_report(report, tmp_path / "eval", model="m", backend="ct2")
    summary = json.loads(summary_path.read_text())
    for key in ("metric", "value", "n_utts", "n_ref_units", "errors", "model", "backend"):
        assert key in summary
    assert {"elapsed_seconds", "rtf"} <= set(summary)
    assert summary["value"] == 0.5 and summary["backend"] == "ct2"
    (line,) = utts_path.read_text(encoding="utf-8").splitlines()
    row = json.loads(line)
    assert row["hypothesis"] == "你们" and row["reference_normalized"] == "你好"
    assert (row["errors"], row["ref_units"]) == (1, 2)


@pytest.mark.slow
def test_evaluate_cli_matches_infer_cli_scored_by_hand(test_wav, test_reference, tmp_path, capsys):
    """Real and synthetic clips through ``evaluate`` (batched) and ``infer`` (one by one).

    The transformers backend's batching is checked in test_transcriber.py.
    """
    import soundfile as sf

    from whisper_finetune.cli import main
    from whisper_finetune.data.audio import resample

    audio = load_audio(test_wav)
    # the same slice as a separate file, written losslessly, for infer
    sf.write(tmp_path / "slice.wav", load_audio(test_wav, 0.0, 4.0), SAMPLE_RATE, subtype="FLOAT")
    # a resampled copy of the second half at 8 kHz
    sf.write(tmp_path / "tail-8k.wav", resample(audio[4 * SAMPLE_RATE :], SAMPLE_RATE, 8000), 8000)
    rows = [
        ({"path": str(test_wav)}, test_reference, test_wav),
        (
            {"path": str(test_wav), "start_time": 0.0, "end_time": 4.0},
            test_reference[:13],
            tmp_path / "slice.wav",
        ),
        ({"path": "tail-8k.wav"}, test_reference[13:], tmp_path / "tail-8k.wav"),
    ]
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"audio": a, "sentence": s}, ensure_ascii=False) + "\n" for a, s, _ in rows
        ),
        encoding="utf-8",
    )
    # ct2 with --batch_size=3 takes faster-whisper's batched path, infer the sequential one
    common = [
        "--model_path=embedded:whisper-base",
        "--backend=ct2",
        "--device=cpu",
        "--language=zh",
    ]
    out_dir = tmp_path / "eval"
    argv = ["evaluate", f"--test_data={manifest}", "--batch_size=3", f"--output_dir={out_dir}"]
    assert main([*argv, *common, "--progress=false"]) == 0
    capsys.readouterr()
    summary = json.loads((out_dir / "summary.json").read_text())
    utterances = [
        json.loads(line) for line in (out_dir / "utterances.jsonl").read_text().splitlines()
    ]

    hypotheses = []
    for _, _, audio_file in rows:
        assert main(["infer", f"--audio_path={audio_file}", *common]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["results"] and result["language"] == "zh"
        hypotheses.append(result["text"])
    assert [u["hypothesis"] for u in utterances] == hypotheses
    by_hand = score(
        [normalize_text(s) for _, s, _ in rows], [normalize_text(h) for h in hypotheses], "cer"
    )
    assert summary["value"] == pytest.approx(by_hand)
    assert summary["n_utts"] == 3 and summary["backend"] == "ct2"
    assert summary["value"] <= 0.3


def test_repetitions_are_flagged_per_utterance_and_counted(tmp_path):
    """A looping hypothesis is marked in utterances.jsonl and counted in summary.json."""
    from whisper_finetune.data.audio import write_wav
    from whisper_finetune.data.manifest import Record
    from whisper_finetune.evaluation.evaluate import EvalConfig, evaluate, write_report
    from whisper_finetune.inference.transcript import Transcript

    class Looping:
        def transcribe_batch(self, audios, options):
            texts = ["今天天气很好", "你不想要我" * 30]
            return [Transcript(texts[i], "zh", a.size / 16000) for i, a in enumerate(audios)]

    records = []
    for i in range(2):
        write_wav(tmp_path / f"{i}.wav", np.zeros(16000, np.float32))
        records.append(Record(audio_path=str(tmp_path / f"{i}.wav"), sentence="今天天气很好"))
    report = evaluate(Looping(), records, EvalConfig(progress=False))
    assert [u.repetition for u in report.utterances] == [False, True]
    summary, utterances = write_report(report, tmp_path / "out")
    assert json.loads(summary.read_text())["n_repetitions"] == 1
    rows = [json.loads(line) for line in utterances.read_text().splitlines()]
    assert [r["repetition"] for r in rows] == [False, True]
