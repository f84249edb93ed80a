"""The synthetic Mandarin corpus: split, determinism, resume, manifests, CLI flags."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisper_finetune.cli._args import dataclass_from_args
from whisper_finetune.cli._prepare_synth import register_synth
from whisper_finetune.data.manifest import read_manifest
from whisper_finetune.data.synth import (
    HskSentence,
    SynthConfig,
    build_corpus,
    check_espeak,
    clean_pinyin,
    colored_noise,
    mix_at_snr,
    pinyin_for_espeak,
    select_sentences,
    split_of,
)

requires_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng; scripts/bootstrap.sh does it)",
)

TINY = {"num_train": 6, "num_test": 2, "noise_share": 1 / 6, "seed": 3}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The same tiny corpus built twice, in two folders."""
    results = []
    for name in ("a", "b"):
        cfg = SynthConfig(target_dir=str(tmp_path_factory.mktemp(name)), **TINY)
        results.append((cfg, build_corpus(cfg)))
    return results


# ------------------------------------------------------------ text and split (no espeak)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ni3 hao3", ["ni3", "hao3"]),
        ("Ni3 HAO3", ["ni3", "hao3"]),
        ("lv4 nu:3 lüe4", ["lv4", "nv3", "lve4"]),
        ("xie4 xie5", ["xie4", "xie5"]),
        ("ma0 ne", ["ma5", "ne5"]),  # neutral tone written 0 or left out
        ("ni3, hao3! 123 ...", ["ni3", "hao3"]),
        ("", []),
    ],
)
def test_clean_pinyin(given, expected):
    assert clean_pinyin(given) == expected


def test_pinyin_for_espeak_carries_punctuation():
    assert (
        pinyin_for_espeak("你好，很高兴认识你。", "ni3 hao3 hen3 gao1 xing4 ren4 shi5 ni3")
        == "ni3 hao3 , hen3 gao1 xing4 ren4 shi5 ni3 ."
    )
    assert pinyin_for_espeak("谢谢你！不客气。", "xie4 xie5 ni3 bu4 ke4 qi5") == (
        "xie4 xie5 ni3 ! bu4 ke4 qi5 ."
    )
    # characters and syllables do not line up (a digit): bare syllables
    assert pinyin_for_espeak("我3点来。", "wo3 san1 dian3 lai2") == "wo3 san1 dian3 lai2"


def _fake_sentences(n_per_level: int = 40) -> list[HskSentence]:
    han = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
    return [
        HskSentence(f"hsk{lv}-{i:04d}", lv, han[i % 50 : i % 50 + 3 + lv] + "。", "x")
        for lv in range(1, 7)
        for i in range(n_per_level)
    ]


def test_split_depends_on_text_only():
    texts = [f"句子{i}。" for i in range(2000)]
    splits = [split_of(t, 0.2) for t in texts]
    assert splits == [split_of(t, 0.2) for t in texts]
    assert 0.15 < splits.count("test") / len(texts) < 0.25


def test_select_sentences_disjoint_mixed_and_stable():
    sentences = list({s.text: s for s in _fake_sentences()}.values())
    cfg = SynthConfig(num_train=30, num_test=6, min_chars=1)
    chosen = select_sentences(sentences, cfg)
    train, test = {s.text for s in chosen["train"]}, {s.text for s in chosen["test"]}
    assert len(train) == 30 and len(test) == 6 and not train & test
    assert len({s.level for s in chosen["train"]}) == 6  # levels mixed
    # another seed picks other sentences, but a sentence never changes split
    other = select_sentences(sentences, dataclasses.replace(cfg, seed=1))
    assert {s.text for s in other["train"]} != train
    assert all(split_of(s.text, cfg.test_fraction) == "test" for s in other["test"])
    with pytest.raises(ValueError, match="num_test"):
        select_sentences(sentences, dataclasses.replace(cfg, num_test=10_000))


def test_dev_sentences_follow_the_training_ones_and_leave_them_unchanged():
    """The dev split is the training pool's next sentences: disjoint from train and test,
    and asking for it does not change which sentences train (the demo's training data)."""
    sentences = list({s.text: s for s in _fake_sentences()}.values())
    cfg = SynthConfig(num_train=30, num_test=6, min_chars=1)
    plain = select_sentences(sentences, cfg)
    with_dev = select_sentences(sentences, dataclasses.replace(cfg, num_dev=8))
    assert plain["dev"] == [] and with_dev["train"] == plain["train"]
    train, dev = {s.text for s in with_dev["train"]}, {s.text for s in with_dev["dev"]}
    test = {s.text for s in with_dev["test"]}
    assert len(dev) == 8 and not dev & train and not dev & test
    assert all(split_of(t, cfg.test_fraction) == "train" for t in dev)
    with pytest.raises(ValueError, match="num_train \\+ num_dev"):
        select_sentences(sentences, dataclasses.replace(cfg, num_dev=10_000))


@pytest.mark.parametrize(
    "bad",
    [
        {"noise_share": 1.5},
        {"test_fraction": 0.0},
        {"speed_wpm": (170, 120)},
        {"pitch": (35,)},
        {"peak_dbfs": (-6.0, 3.0)},
        {"levels": (7,)},
        {"num_workers": 0},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        SynthConfig(**bad)


def test_missing_espeak_says_how_to_install():
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        check_espeak("espeak-ng-that-does-not-exist")


@requires_espeak
def test_unknown_voice_or_variant_is_an_error():
    assert check_espeak("espeak-ng", "cmn-latn-pinyin", SynthConfig().voice_variants)
    with pytest.raises(RuntimeError, match="no voice 'xx-nope'"):
        check_espeak("espeak-ng", "xx-nope")
    with pytest.raises(RuntimeError, match="variant"):
        check_espeak("espeak-ng", "cmn-latn-pinyin", ("m1", "no-such-variant"))


def test_audio_helpers():
    rng = np.random.default_rng(0)
    out = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    for color in ("white", "pink", "brown"):
        noise = colored_noise(8000, color, rng)
        assert abs(np.sqrt(np.mean(noise**2)) - 1.0) < 1e-4
    mixed = mix_at_snr(out, colored_noise(len(out), "white", rng), 20.0)
    noise_power = np.mean((mixed - out) ** 2)
    assert abs(10 * np.log10(np.mean(out**2) / noise_power) - 20.0) < 0.1


def test_cli_flags_build_the_config():
    parser = argparse.ArgumentParser()
    register_synth(parser.add_subparsers(dest="dataset"))
    args = parser.parse_args(
        [
            "synth-mandarin",
            "--target_dir=x",
            "--num_train",
            "6",
            "--speed_wpm",
            "130",
            "150",
            "--peak_dbfs",
            "-6",
            "-3",
            "--voice_variants",
            "default",
            "f2",
        ]
    )
    cfg = dataclass_from_args(SynthConfig, args)
    assert cfg == SynthConfig(
        target_dir="x",
        num_train=6,
        speed_wpm=(130, 150),
        peak_dbfs=(-6.0, -3.0),
        voice_variants=("default", "f2"),
    )
    assert callable(args.func)


# ------------------------------------------------------------ the corpus (espeak-ng)


@requires_espeak
def test_counts_and_manifests(corpora):
    cfg, result = corpora[0]
    train, test = read_manifest(result.train_manifest), read_manifest(result.test_manifest)
    assert (result.num_train, result.num_test, result.num_nospeech) == (6, 2, 1)
    assert len(train) == 7 and len(test) == 2
    assert result.num_written == 9 and result.num_reused == 0
    assert all(r.language == "zh" for r in train + test)
    assert (Path(cfg.target_dir) / "synth-mandarin.json").is_file()


@requires_espeak
def test_split_is_disjoint_by_sentence(corpora):
    _, result = corpora[0]
    train = {r.sentence for r in read_manifest(result.train_manifest) if r.sentence}
    test = {r.sentence for r in read_manifest(result.test_manifest)}
    assert len(train) == 6 and len(test) == 2 and not train & test
    assert all(split_of(t, 0.2) == "test" for t in test)


@requires_espeak
def test_nospeech_records(corpora):
    _, result = corpora[0]
    nospeech = [r for r in read_manifest(result.train_manifest) if not r.sentence]
    assert len(nospeech) == 1 and nospeech[0].sentence == ""
    assert 1.0 <= nospeech[0].duration <= 8.0
    assert all(r.sentence for r in read_manifest(result.test_manifest))


@requires_espeak
def test_durations_match_files_and_speech_is_audible(corpora):
    _, result = corpora[0]
    for record in read_manifest(result.train_manifest) + read_manifest(result.test_manifest):
        info = sf.info(record.audio_path)
        assert info.samplerate == 16000 and info.channels == 1
        assert record.duration == pytest.approx(info.frames / 16000, abs=1e-3)
        if record.sentence:
            samples, _ = sf.read(record.audio_path, dtype="float32")
            rms_db = 10 * np.log10(np.mean(samples**2))
            assert rms_db > -45, record.audio_path
            # plausible speaking time: roughly 0.2-1.0 s a character, plus padding
            chars = sum("\u4e00" <= c <= "\u9fff" for c in record.sentence)
            assert 0.2 * chars < record.duration < 1.0 * chars + 1.5
            assert record.sentence[-1] in "。？！", "punctuation kept"


@requires_espeak
def test_deterministic_bytes(corpora):
    (cfg_a, res_a), (cfg_b, res_b) = corpora
    for split in ("train", "test"):
        files_a = sorted((Path(cfg_a.target_dir) / split).glob("*.wav"))
        files_b = sorted((Path(cfg_b.target_dir) / split).glob("*.wav"))
        assert [f.name for f in files_a] == [f.name for f in files_b]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files_a, files_b, strict=True))
    assert res_a.train_manifest.read_text() == res_b.train_manifest.read_text()
    assert res_a.test_manifest.read_text() == res_b.test_manifest.read_text()


@requires_espeak
def test_rerun_resumes(corpora):
    cfg, first = corpora[0]
    manifest = first.train_manifest.read_text()
    again = build_corpus(cfg)
    assert (again.num_written, again.num_reused) == (0, 9)
    assert again.train_manifest.read_text() == manifest
    # a damaged wav is synthesised again, to the same bytes
    victim = read_manifest(first.test_manifest)[0].audio_path
    original = Path(victim).read_bytes()
    Path(victim).write_bytes(b"RIFF")
    assert build_corpus(cfg).num_written == 1
    assert Path(victim).read_bytes() == original
