"""Labels, filters, bad-data handling, collation and augmentation (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from finetune_data import CLIPS, tone, write_manifest

from whisper_finetune.data.audio import write_wav
from whisper_finetune.data.augment import Augmenter, load_augment_config, parse_specs
from whisper_finetune.data.collator import IGNORE_INDEX, WhisperCollator
from whisper_finetune.data.dataset import (
    LabelBuilder,
    WhisperDataset,
    language_code,
    prepare_records,
    write_reports,
)
from whisper_finetune.data.manifest import ManifestError, Record, TimedText, read_manifest

SOT, EOT, NOCAPTIONS, NOTIMESTAMPS, TS0 = 50258, 50257, 50362, 50363, 50364
ZH, EN, TRANSCRIBE, TRANSLATE = 50260, 50259, 50359, 50358
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import WhisperProcessor

    return WhisperProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def labels(processor):
    return LabelBuilder(processor.tokenizer, "zh", "transcribe")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_manifest(tmp_path_factory.mktemp("clips"))


def _text_ids(labels, text):
    return labels.tokenizer.encode(text, add_special_tokens=False)


def test_prefix_tokens_follow_the_record_language(labels):
    zh = labels.build(Record("a.wav", "你好"))
    assert zh[:4] == [SOT, ZH, TRANSCRIBE, NOTIMESTAMPS] and zh[-1] == EOT
    assert zh[4:-1] == _text_ids(labels, "你好")
    en = labels.build(Record("a.wav", "hello", language="en"))
    assert en[:4] == [SOT, EN, TRANSCRIBE, NOTIMESTAMPS]
    assert labels.build(Record("a.wav", "hi", language="English"))[1] == EN
    translate = LabelBuilder(labels.tokenizer, "Chinese", "translate")
    assert translate.build(Record("a.wav", "你好"))[:3] == [SOT, ZH, TRANSLATE]
    assert language_code("mandarin") == "zh" and language_code("<|ja|>") == "ja"
    with pytest.raises(ValueError, match="unknown Whisper language"):
        labels.build(Record("a.wav", "x", language="klingon"))


def test_timestamp_labels(labels):
    record = Record(
        "a.wav", "你好世界", sentences=(TimedText(0.0, 1.2, "你好"), TimedText(1.4, 2.6, "世界"))
    )
    ids = labels.build(record, timestamps=True)
    expected = (
        [SOT, ZH, TRANSCRIBE, TS0]
        + _text_ids(labels, "你好")
        + [TS0 + 60, TS0 + 70]
        + _text_ids(labels, "世界")
        + [TS0 + 130, EOT]
    )
    assert ids == expected
    assert labels.tokenizer.convert_ids_to_tokens(ids[3]) == "<|0.00|>"
    assert labels.tokenizer.convert_ids_to_tokens(TS0 + 130) == "<|2.60|>"
    # speed 0.5x (scale 2) then a 0.1 s delay
    shifted = labels.build(record, timestamps=True, time_scale=2.0, time_offset=0.1)
    assert shifted[3] == TS0 + 5 and shifted[-2] == TS0 + 265
    # without sentences there is nothing to time: <|notimestamps|>
    assert labels.build(Record("a.wav", "你好"), timestamps=True)[3] == NOTIMESTAMPS


def test_no_speech_labels(labels):
    # whisper-base's vocabulary calls it <|nocaptions|>; <|nospeech|> is large-v3's name
    assert labels.no_speech == NOCAPTIONS
    assert labels.build(Record("a.wav", "")) == [SOT, NOCAPTIONS, EOT]
    assert labels.build(Record("a.wav", "  ", language="en"), timestamps=True) == [
        SOT,
        NOCAPTIONS,
        EOT,
    ]


def test_timestamp_ratio_mixes_deterministically(manifest, processor, labels):
    records = [r for r in read_manifest(manifest) if r.sentences]

    def kinds(ratio, epoch, seed=0):
        ds = WhisperDataset(
            records, processor.feature_extractor, labels, timestamp_ratio=ratio, seed=seed
        )
        ds.set_epoch(epoch)
        return [ds[i]["labels"][3] != NOTIMESTAMPS for i in range(len(ds))]

    assert kinds(0.0, 0) == [False] * len(records)
    assert kinds(1.0, 0) == [True] * len(records)
    draws = [kinds(0.5, e) for e in range(4)]
    assert draws == [kinds(0.5, e) for e in range(4)]  # same seed, same epoch: same choice
    flat = [x for d in draws for x in d]
    assert 0 < sum(flat) < len(flat)
    assert len({tuple(d) for d in draws}) > 1  # and it changes between epochs


def test_filters_and_long_labels_are_counted(tmp_path, labels):
    long_text = "今天天气很好" * 120  # 480 tokens > 448
    extra = [
        {"audio": {"path": "clip0.wav"}, "sentence": long_text},
        {"audio": {"path": "clip0.wav", "start_time": 0.0, "end_time": 0.2}, "sentence": "短"},
    ]
    path = write_manifest(tmp_path, extra=extra)
    kept, report = prepare_records(read_manifest(path), labels, min_duration=1.2, max_duration=2.6)
    counts = report.counts
    assert counts["labels_too_long"] == 1
    assert counts["too_short"] == 2  # the 1.0 s no-speech clip and the 0.2 s slice
    assert counts["too_long"] == 1  # the 3.0 s clip
    assert report.kept == len(kept) == report.total - 4
    assert report.no_speech == 0
    reasons = {s.origin.rsplit(":", 1)[1]: s.reason for s in report.skipped}
    assert reasons["7"] == "labels_too_long" and reasons["8"] == "too_short"
    with pytest.raises(ValueError, match="30"):
        prepare_records(read_manifest(path), labels, max_duration=31)


def _corrupt_manifest(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    extra = [
        {"audio": {"path": "broken.wav"}, "sentence": "坏的"},
        {"audio": {"path": "missing.wav"}, "sentence": "没有"},
    ]
    return write_manifest(tmp_path, clips=CLIPS[:2], extra=extra)


def test_bad_audio_error_names_the_manifest_line(tmp_path, labels):
    path = _corrupt_manifest(tmp_path)
    with pytest.raises(ManifestError, match=rf"{path.name}:3: .*broken\.wav"):
        prepare_records(read_manifest(path), labels)


def test_skip_bad_samples_lists_them_in_a_report(tmp_path, labels):
    path = _corrupt_manifest(tmp_path)
    kept, report = prepare_records(read_manifest(path), labels, skip_bad=True)
    assert len(kept) == 2 and report.counts["bad_audio"] == 2
    out = json.loads(write_reports([report], tmp_path / "report.json").read_text(encoding="utf-8"))
    train = out["train"]
    assert train["skipped_count"] == 2 and train["skipped_by_reason"]["bad_audio"] == 2
    assert [s["origin"] for s in train["skipped"]] == [f"{path}:3", f"{path}:4"]
    assert "broken.wav" in train["skipped"][0]["detail"]


def test_bad_audio_found_lazily_still_names_the_line(tmp_path, processor, labels):
    path = _corrupt_manifest(tmp_path)
    kept, _ = prepare_records(read_manifest(path), labels, verify_audio=False)
    ds = WhisperDataset(kept, processor.feature_extractor, labels)
    assert ds[0]["input_features"].shape == (80, 3000)
    with pytest.raises(ManifestError, match=rf"{path.name}:3"):
        ds[2]


def test_collator_masks_padding_and_strips_sot(manifest, processor, labels):
    records = read_manifest(manifest)
    ds = WhisperDataset(
        records, processor.feature_extractor, labels, timestamp_ratio=1.0, cache_features=True
    )
    samples = [ds[i] for i in range(len(ds))]
    assert ds[0]["input_features"] is samples[0]["input_features"]  # cached
    batch = WhisperCollator(SOT)(samples)
    assert batch["input_features"].shape == (len(ds), 80, 3000)
    lab = batch["labels"]
    assert (lab[:, 0] != SOT).all()
    for row, sample in zip(lab.tolist(), samples, strict=True):
        n = len(sample["labels"]) - 1
        assert row[:n] == sample["labels"][1:]
        assert row[n - 1] == EOT  # EOT is a target, never masked
        assert all(x == IGNORE_INDEX for x in row[n:])
    assert (lab == IGNORE_INDEX).any()


def test_augmentation_config_and_time_map(tmp_path):
    noise_dir = tmp_path / "noise"
    noise_dir.mkdir()
    write_wav(noise_dir / "n.wav", tone(0.5, 50.0))
    config = tmp_path / "aug.json"
    config.write_text(
        json.dumps(
            [
                {
                    "type": "speed",
                    "params": {"min_speed_rate": 0.5, "max_speed_rate": 0.5, "num_rates": 1},
                    "prob": 1.0,
                },
                {
                    "type": "shift",
                    "params": {"min_shift_ms": 100, "max_shift_ms": 100},
                    "prob": 1.0,
                },
                {
                    "type": "volume",
                    "params": {"min_gain_dBFS": -6, "max_gain_dBFS": -6},
                    "prob": 1.0,
                },
                {
                    "type": "noise",
                    "params": {"noise_dir": "noise", "min_snr_dB": 20, "max_snr_dB": 20},
                    "prob": 1.0,
                },
                {"type": "resample", "params": {"new_sample_rates": [8000]}, "prob": 1.0},
            ]
        )
    )
    aug = Augmenter.from_file(config)
    wave = tone(1.0, 440.0)
    out = aug(wave, np.random.default_rng(0))
    assert out.wave.size == 2 * wave.size and out.wave.dtype == np.float32
    assert out.time_scale == pytest.approx(2.0) and out.time_offset == pytest.approx(0.1)
    assert np.array_equal(wave, tone(1.0, 440.0))  # input untouched
    yaml_config = tmp_path / "aug.yaml"
    yaml_config.write_text(
        "- {type: volume, params: {min_gain_dBFS: 0, max_gain_dBFS: 0}, prob: 0.5}\n"
    )
    assert load_augment_config(yaml_config)[0].prob == 0.5
    with pytest.raises(ValueError, match="unknown type 'reverb'"):
        parse_specs([{"type": "reverb"}])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        Augmenter(
            parse_specs([{"type": "noise", "params": {"noise_dir": str(tmp_path / "empty")}}])
        )


def test_augmented_dataset_keeps_timestamps_aligned(manifest, processor, labels, tmp_path):
    specs = parse_specs(
        [
            {
                "type": "speed",
                "params": {"min_speed_rate": 2.0, "max_speed_rate": 2.0, "num_rates": 1},
            }
        ]
    )
    records = [r for r in read_manifest(manifest) if r.sentences][:1]
    ds = WhisperDataset(
        records,
        processor.feature_extractor,
        labels,
        timestamp_ratio=1.0,
        augmenter=Augmenter(specs),
    )
    ids = ds[0]["labels"]
    end = records[0].sentences[-1].end
    assert ids[-2] == TS0 + round(end / 2 / 0.02)
    assert ds[0]["input_features"].shape == (80, 3000)
