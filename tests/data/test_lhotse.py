"""Lhotse interop: CutSets (and recordings + supervisions) become our manifests, with
multi-supervision cuts as ``sentences`` and a language per record; ``--train_data`` takes a
CutSet; our AISHELL recipe and Lhotse's agree on the same miniature corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from finetune_data import tone

from whisper_finetune.cli import main
from whisper_finetune.data.audio import SAMPLE_RATE, load_audio, write_wav
from whisper_finetune.data.manifest import TimedText, read_manifest
from whisper_finetune.data.recipes.aishell import AishellConfig, prepare_aishell
from whisper_finetune.data.recipes.lhotse import LhotseConfig, prepare_lhotse
from whisper_finetune.data.recipes.validate import ValidateConfig, validate_manifest

lhotse = pytest.importorskip("lhotse")


def _sup(rec, i, start, duration, text, language):
    return lhotse.SupervisionSegment(
        id=f"{rec.id}-{i}",
        recording_id=rec.id,
        start=start,
        duration=duration,
        channel=0,
        text=text,
        language=language,
    )


@pytest.fixture(scope="module")
def cutset(tmp_path_factory) -> dict:
    """Four cuts: a 45 s recording with five segments, a mixed Chinese/English clip, a
    two-sentence Chinese clip and a 3 s slice (a truncated cut) of the long recording."""
    folder = tmp_path_factory.mktemp("lhotse")
    write_wav(folder / "long.wav", tone(45.0, 330.0, seed=1))
    write_wav(folder / "mixed.wav", tone(6.0, 440.0, seed=2))
    write_wav(folder / "two.wav", tone(5.0, 550.0, seed=3))
    recs = {n: lhotse.Recording.from_file(folder / f"{n}.wav") for n in ("long", "mixed", "two")}
    sups = [
        _sup(recs["long"], 0, 1.0, 8.0, "第一句话", "Chinese"),
        _sup(recs["long"], 1, 10.0, 9.0, "第二句话", "Chinese"),
        _sup(recs["long"], 2, 20.0, 8.5, "第三句话", "Chinese"),
        _sup(recs["long"], 3, 30.0, 7.0, "第四句话", "Chinese"),
        _sup(recs["long"], 4, 38.0, 6.0, "第五句话", "Chinese"),
        _sup(recs["mixed"], 0, 0.5, 2.0, "你好", "Chinese"),
        _sup(recs["mixed"], 1, 3.0, 2.5, "hello there", "English"),
        _sup(recs["two"], 0, 0.2, 2.0, "今天天气", "zh"),
        _sup(recs["two"], 1, 2.4, 2.4, "很好", "zh"),
    ]
    cuts = lhotse.CutSet.from_manifests(
        recordings=lhotse.RecordingSet.from_recordings(recs.values()),
        supervisions=lhotse.SupervisionSet.from_segments(sups),
    )
    whole = {c.recording_id: c for c in cuts}
    sliced = whole["long"].truncate(offset=9.5, duration=10.0, keep_excessive_supervisions=False)
    cuts = lhotse.CutSet.from_cuts([*whole.values(), sliced.with_id("long-slice")])
    path = folder / "cuts_train.jsonl.gz"
    cuts.to_file(path)
    return {"path": path, "folder": folder, "cuts": cuts}


def test_prepare_lhotse_turns_cuts_into_manifest_records(cutset, tmp_path, capsys):
    out = tmp_path / "manifests"
    assert main(["prepare", "lhotse", f"--cuts={cutset['path']}", f"--target_dir={out}"]) == 0
    assert "4 cuts -> 6 records" in capsys.readouterr().out
    records = read_manifest(out / "cuts_train.jsonl")
    by_file: dict[str, list] = {}
    for r in records:
        by_file.setdefault(Path(r.audio_path).name, []).append(r)

    # 45 s of five segments: windows of whole segments of at most 30 s, with times
    long = sorted(by_file["long.wav"], key=lambda r: r.start_time)
    first, piece, second = long
    assert (first.start_time, first.end_time) == (1.0, 28.5)
    assert first.sentences == (
        TimedText(0.0, 8.0, "第一句话"),
        TimedText(9.0, 18.0, "第二句话"),
        TimedText(19.0, 27.5, "第三句话"),
    )
    assert first.sentence == "第一句话第二句话第三句话" and first.language == "zh"
    assert (second.start_time, second.end_time) == (30.0, 44.0)
    assert second.sentences == (TimedText(0.0, 7.0, "第四句话"), TimedText(8.0, 14.0, "第五句话"))
    # the truncated cut: its own slice, the one supervision inside it
    assert (piece.start_time, piece.end_time) == (9.5, 19.5)
    assert piece.sentences == (TimedText(0.5, 9.5, "第二句话"),)

    # mixed languages: one record per supervision, each with its language
    mixed = sorted(by_file["mixed.wav"], key=lambda r: r.start_time)
    assert [(r.start_time, r.end_time, r.sentence, r.language) for r in mixed] == [
        (0.5, 2.5, "你好", "zh"),
        (3.0, 5.5, "hello there", "en"),
    ]
    assert mixed[1].sentences == (TimedText(0.0, 2.5, "hello there"),)

    # a whole short recording: no slice, both sentences with their times
    (two,) = by_file["two.wav"]
    assert (two.start_time, two.end_time, two.duration) == (None, None, 5.0)
    assert two.sentences == (TimedText(0.2, 2.2, "今天天气"), TimedText(2.4, 4.8, "很好"))
    assert two.sentence == "今天天气很好" and two.language == "zh"

    # the slices load the audio the cut stands for
    audio = load_audio(cutset["folder"] / "long.wav")
    np.testing.assert_allclose(
        load_audio(piece.audio_path, piece.start_time, piece.end_time),
        audio[round(9.5 * SAMPLE_RATE) : round(19.5 * SAMPLE_RATE)],
        atol=1e-4,
    )


def test_train_data_accepts_a_cutset_file(cutset, tmp_path):
    written = prepare_lhotse(LhotseConfig(cuts=str(cutset["path"]), target_dir=str(tmp_path)))
    direct = read_manifest(cutset["path"])
    assert [r.to_json() for r in direct] == [r.to_json() for r in read_manifest(written.manifest)]
    # validate checks manifests; for a CutSet it says how to get one
    with pytest.raises(ValueError, match="prepare lhotse --cuts="):
        validate_manifest(ValidateConfig(manifest=str(cutset["path"])))


@pytest.mark.slow
def test_finetune_trains_on_a_cutset(cutset, tiny_model_dir, tmp_path, one_torch_thread):
    from whisper_finetune.training.train import FinetuneConfig, finetune

    out = tmp_path / "run"
    result = finetune(
        FinetuneConfig(
            base_model=str(tiny_model_dir),
            train_data=str(cutset["path"]),
            output_dir=str(out),
            per_device_train_batch_size=2,
            max_steps=1,
            save_steps=1,
            lora_r=4,
            lora_alpha=8,
            report_to=("none",),
        )
    )
    report = json.loads((out / "data_report.json").read_text(encoding="utf-8"))["train"]
    assert report["total"] == 6 and report["kept"] == 6
    assert result is not None


def test_recordings_and_supervisions_without_cuts_are_joined(cutset, tmp_path):
    cuts = cutset["cuts"]
    recs = tmp_path / "recordings.jsonl.gz"
    sups = tmp_path / "supervisions.jsonl.gz"
    lhotse.RecordingSet.from_recordings(
        {c.recording.id: c.recording for c in cuts}.values()
    ).to_file(recs)
    lhotse.SupervisionSet.from_segments(
        {s.id: s for c in cuts for s in c.supervisions}.values()
    ).to_file(sups)
    result = prepare_lhotse(
        LhotseConfig(
            recordings=str(recs), supervisions=str(sups), target_dir=str(tmp_path), name="j"
        )
    )
    assert result.manifest.endswith("j.jsonl") and result.cuts == 3 and result.records == 5


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="--cuts, or --recordings"):
        prepare_lhotse(LhotseConfig(target_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="nope.jsonl.gz"):
        prepare_lhotse(LhotseConfig(cuts=str(tmp_path / "nope.jsonl.gz")))


# ------------------------------------------------- our AISHELL recipe and Lhotse's agree

TRANSCRIPT = {
    "BAC009S0002W0122": "而对 楼市 成交 抑制 作用 最 大 的 限 购",
    "BAC009S0002W0123": "也 成为 地方 政府 的 眼中 钉",
    "BAC009S0724W0121": "甚至 出现 交易 几乎 停滞 的 情况",
    "BAC009S0764W0121": "一二 线 城市 虽然 也 处于 调整 中",
    "BAC009S0999W0001": "没有 音频 的 转写",  # no wav: both recipes leave it out
}
SPLIT_OF = {"S0002": "train", "S0724": "dev", "S0764": "test"}


@pytest.fixture(scope="module")
def aishell_corpus(tmp_path_factory) -> Path:
    """An extracted miniature AISHELL-1: per-split speaker folders and the transcript."""
    root = tmp_path_factory.mktemp("aishell")
    data = root / "data_aishell"
    for i, utt in enumerate(sorted(TRANSCRIPT)[:4]):
        speaker = utt[6:11]
        write_wav(
            data / "wav" / SPLIT_OF[speaker] / speaker / f"{utt}.wav", tone(1.2 + 0.3 * i, 300)
        )
    # a wav without a transcript line: both recipes leave it out
    write_wav(data / "wav" / "train" / "S0002" / "BAC009S0002W0999.wav", tone(1.0, 300))
    transcript = data / "transcript" / "aishell_transcript_v0.8.txt"
    transcript.parent.mkdir(parents=True)
    transcript.write_text("".join(f"{k} {v}\n" for k, v in TRANSCRIPT.items()), encoding="utf-8")
    (data / ".extracted").write_text("done\n", encoding="utf-8")  # our recipe: no archive
    return root


def test_our_aishell_recipe_and_lhotses_agree(aishell_corpus, tmp_path):
    from lhotse.recipes import prepare_aishell as lhotse_prepare_aishell

    ours = prepare_aishell(
        AishellConfig(target_dir=str(aishell_corpus), annotation_text=str(tmp_path / "ours"))
    )
    lhotse_dir = tmp_path / "lhotse"
    lhotse_prepare_aishell(aishell_corpus, lhotse_dir)
    for split in ("train", "dev", "test"):
        theirs = prepare_lhotse(
            LhotseConfig(
                recordings=str(lhotse_dir / f"aishell_recordings_{split}.jsonl.gz"),
                supervisions=str(lhotse_dir / f"aishell_supervisions_{split}.jsonl.gz"),
                target_dir=str(tmp_path / "theirs"),
                name=split,
            )
        )
        a = sorted((r.to_json() for r in read_manifest(ours.manifests[split])), key=str)
        b = sorted((r.to_json() for r in read_manifest(theirs.manifest)), key=str)
        assert a == b, split
        assert len(a) == {"train": 2, "dev": 1, "test": 1}[split]
