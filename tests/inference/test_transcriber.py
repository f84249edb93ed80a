"""Transcript types, output formats, and both backends (tiny model and real whisper-base)."""

from __future__ import annotations

import inspect
import json
from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest

from whisper_finetune.data.audio import load_audio
from whisper_finetune.inference.transcript import (
    DecodeOptions,
    Segment,
    Transcript,
    format_transcript,
    language_code,
)

MAX_CER = 0.15
# a random tiny model rarely predicts end-of-text: cap its output so tests stay fast
TINY = DecodeOptions(language="zh", max_new_tokens=8)


def _cer(reference: str, hypothesis: str) -> float:
    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.text import normalize_text

    return score(normalize_text(reference), normalize_text(hypothesis), "cer")


def _assert_monotonic(t: Transcript) -> None:
    previous_end = 0.0
    for s in t.segments:
        assert 0.0 <= s.start <= s.end <= t.duration + 1e-6, s
        assert s.start >= previous_end - 1e-6, (s, previous_end)
        previous_end = s.end


# ---------------------------------------------------------------- options and types


def test_decode_options_validate_and_are_frozen():
    with pytest.raises(ValueError, match="task"):
        DecodeOptions(task="summarize")
    with pytest.raises(ValueError, match="beam_size"):
        DecodeOptions(beam_size=0)
    with pytest.raises(ValueError, match="temperature"):
        DecodeOptions(temperature=-1)
    options = DecodeOptions()
    with pytest.raises(FrozenInstanceError):
        options.language = "zh"  # type: ignore[misc]
    assert replace(options, language="zh").language == "zh"
    assert options.language is None


@pytest.mark.parametrize(
    ("given", "code"),
    [("zh", "zh"), ("Chinese", "zh"), ("mandarin", "zh"), (" EN ", "en"), ("", None)],
)
def test_language_names_become_codes(given, code):
    assert language_code(given) == code
    assert DecodeOptions(language=given).language == code


def test_unknown_language_name_is_an_error():
    with pytest.raises(ValueError, match="unknown language"):
        DecodeOptions(language="klingonese")


def test_segment_texts_join_without_spaces_in_chinese_only():
    zh = Transcript.from_segments([Segment(0, 1, "你好,"), Segment(1, 2, "世界。")], "zh", 2.0)
    assert zh.text == "你好,世界。"
    en = Transcript.from_segments([Segment(0, 1, "Hello,"), Segment(1, 2, "world.")], "en", 2.0)
    assert en.text == "Hello, world."


def test_normalized_switches():
    t = Transcript.from_segments([Segment(0, 1, "近幾年,"), Segment(1, 2, "Hello World!")], "zh", 2)
    assert t.normalized() is t
    simple = t.normalized(to_simplified=True)
    assert simple.text == "近几年, Hello World!"  # punctuation and case kept
    assert t.normalized(remove_punctuation=True, to_simplified=True).text == "近几年hello world"
    assert t.normalized(remove_punctuation=True).segments[0].text == "近幾年"


def _sample() -> Transcript:
    return Transcript.from_segments(
        [Segment(0.0, 2.5, "近几年,"), Segment(2.5, 3725.0071, "不但我用书。")], "zh", 3726.0
    )


def test_json_format_is_the_original_shape():
    data = json.loads(format_transcript(_sample(), "json"))
    assert list(data) == ["language", "duration", "results", "text"]
    assert data["results"][1] == {"start": 2.5, "end": 3725.01, "text": "不但我用书。"}
    assert data["text"] == "近几年,不但我用书。"
    assert "近几年" in format_transcript(_sample(), "json")  # ensure_ascii=False


def test_srt_vtt_txt_formats():
    srt = format_transcript(_sample(), "srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:02,500\n近几年,\n\n2\n")
    assert "00:00:02,500 --> 01:02:05,007\n不但我用书。" in srt
    vtt = format_transcript(_sample(), "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n")
    assert "01:02:05.007" in vtt
    assert format_transcript(_sample(), "txt") == "近几年,不但我用书。\n"
    untimed = Transcript("你好", "zh", 1.5)
    assert "00:00:01,500" in format_transcript(untimed, "srt")
    assert format_transcript(Transcript("", "zh", 0.0), "srt") == ""
    with pytest.raises(ValueError, match="output format"):
        format_transcript(_sample(), "docx")


def test_backends_share_one_signature():
    from whisper_finetune.inference.base import Transcriber
    from whisper_finetune.inference.ct2 import CT2Transcriber
    from whisper_finetune.inference.hf import HFTranscriber
    from whisper_finetune.inference.whispercpp import WhisperCppTranscriber

    for method in ("transcribe", "transcribe_batch"):
        expected = inspect.signature(getattr(Transcriber, method))
        for cls in (HFTranscriber, CT2Transcriber, WhisperCppTranscriber):
            assert inspect.signature(getattr(cls, method)) == expected, (cls, method)


# ---------------------------------------------------------------- tiny random model


@pytest.fixture(scope="module")
def tiny_ct2_dir(tiny_model_dir, tmp_path_factory):
    from whisper_finetune.models.convert import convert_to_ct2

    return convert_to_ct2(
        tiny_model_dir, tmp_path_factory.mktemp("tiny-ct2") / "ct2", quantization="float32"
    )


@pytest.fixture(scope="module")
def tiny_transcribers(tiny_model_dir, tiny_ct2_dir):
    from whisper_finetune.inference.loader import load_transcriber

    ct2_dir = tiny_ct2_dir
    return {
        "transformers": load_transcriber(tiny_model_dir, "transformers", device="cpu"),
        "ct2": load_transcriber(ct2_dir, "ct2", device="cpu"),
    }


@pytest.mark.parametrize("backend", ["transformers", "ct2"])
def test_tiny_model_batch_matches_one_by_one(tiny_transcribers, backend, test_wav):
    """A batch gives each clip the text it gets alone; an empty clip gives nothing."""
    from whisper_finetune.data.audio import load_audio
    from whisper_finetune.inference.base import Transcriber

    transcriber = tiny_transcribers[backend]
    assert isinstance(transcriber, Transcriber)
    plain = replace(TINY, robust=False)
    audio = load_audio(test_wav)
    clips = [audio[:16000], np.zeros(0, np.float32), audio]
    batch = transcriber.transcribe_batch(clips, plain)
    alone = [transcriber.transcribe(c, plain) for c in clips]
    assert [b.text for b in batch] == [a.text for a in alone]
    assert batch[0].text and batch[2].text
    assert batch[1].text == "" and batch[1].segments == ()
    assert batch[2].duration == pytest.approx(8.39, abs=0.01)
    for t in batch:
        _assert_monotonic(t)


def test_both_backends_detect_the_same_language_on_the_same_weights(tiny_transcribers, test_wav):
    """Language detection runs (no language given) and agrees across backends."""
    from whisper_finetune.inference.hf import HFTranscriber

    plain = DecodeOptions.plain(max_new_tokens=2)
    detected = {b: t.transcribe(test_wav, plain).language for b, t in tiny_transcribers.items()}
    hf = tiny_transcribers["transformers"]
    assert isinstance(hf, HFTranscriber)
    features, _ = hf._features([np.zeros(16000, np.float32)], False)
    assert detected["transformers"] == detected["ct2"], detected
    assert f"<|{detected['ct2']}|>" in hf.processor.tokenizer.get_vocab()


@pytest.mark.parametrize("output_format", ["json", "txt", "srt", "vtt"])
def test_infer_cli_output_formats(tiny_ct2_dir, test_wav, tmp_path, capsys, output_format):
    from whisper_finetune.cli import main

    argv = ["infer", f"--audio_path={test_wav}", f"--model_path={tiny_ct2_dir}", "--backend=ct2"]
    argv += ["--language=zh", "--max_new_tokens=6", f"--output_format={output_format}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    out = tmp_path / f"result.{output_format}"
    assert main([*argv, f"--output_file={out}"]) == 0
    assert capsys.readouterr().out == ""
    assert out.read_text(encoding="utf-8") == printed
    if output_format == "json":
        data = json.loads(printed)
        assert data["language"] == "zh" and data["duration"] == pytest.approx(8.39, abs=0.01)
        assert data["results"] and set(data["results"][0]) == {"start", "end", "text"}
    elif output_format == "srt":
        assert printed.startswith("1\n00:00:")
    elif output_format == "vtt":
        assert printed.startswith("WEBVTT\n\n")


def test_ct2_only_options_are_refused_by_transformers(tiny_transcribers):
    audio = np.zeros(16000, np.float32)
    for name in ("hotwords", "vad_filter", "word_timestamps"):
        value = "你好" if name == "hotwords" else True
        with pytest.raises(ValueError, match="ct2"):
            tiny_transcribers["transformers"].transcribe(audio, replace(TINY, **{name: value}))


# ---------------------------------------------------------------- real whisper-base


@pytest.fixture(scope="module")
def base_transformers():
    from whisper_finetune.inference.loader import load_transcriber

    return load_transcriber("embedded:whisper-base", "transformers", device="cpu")


@pytest.fixture(scope="module")
def base_ct2():
    from whisper_finetune.inference.loader import load_transcriber

    return load_transcriber("embedded:whisper-base", "ct2", device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["transformers", "ct2"])
def test_whisper_base_transcribes_test_wav(request, backend, test_wav, test_reference):
    transcriber = request.getfixturevalue(f"base_{backend}")
    t = transcriber.transcribe(test_wav, DecodeOptions())  # language detected
    assert t.language == "zh"
    assert _cer(test_reference, t.text) <= MAX_CER, t.text
    assert t.segments and t.segments[0].start == 0.0
    _assert_monotonic(t)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["transformers", "ct2"])
def test_long_audio_is_transcribed_past_30_seconds(request, backend, distinct_speech):
    """Four different recordings, 33 s: robust decoding (the default) on both backends.

    (Four copies of test.wav compressed like a loop and sent transformers' first window
    to the fallback temperatures; distinct speech is what users transcribe.)"""
    transcriber = request.getfixturevalue(f"base_{backend}")
    t = transcriber.transcribe(distinct_speech.samples, DecodeOptions(language="zh"))
    assert t.duration > 30
    _assert_monotonic(t)
    assert t.segments[-1].end > 30
    assert len(t.segments) >= 4
    # measured 0.09 on both (0.07 on int8); dropping the shortest clip adds 0.12
    assert _cer(distinct_speech.reference, t.text) <= MAX_CER, t.text


@pytest.mark.slow
def test_batched_ct2_maps_clips_back_in_order(real_speech):
    """Each clip of a batch gets its own text: the one it gets alone, close to its reference."""
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.inference.ct2 import CT2Transcriber
    from whisper_finetune.models.resolve import resolve_model

    records = [r for r in read_manifest(real_speech) if r.duration and r.duration < 5][:3]
    clips = [load_audio(r.audio_path) for r in records]
    path = resolve_model("embedded:whisper-base", "ct2")
    batched = CT2Transcriber(path, device="cpu", compute_type="int8", batch_size=3)
    alone = CT2Transcriber(path, device="cpu", compute_type="int8")
    options = DecodeOptions.plain(language="zh", without_timestamps=True)
    out = batched.transcribe_batch(clips, options)
    expected = [alone.transcribe(c, options).text for c in clips]
    assert [t.text for t in out] == expected
    for record, t in zip(records, out, strict=True):
        assert _cer(record.sentence, t.text) < 0.5, (record.sentence, t.text)
    assert [t.duration for t in out] == [c.size / 16000 for c in clips]


@pytest.mark.slow
def test_transformers_batch_matches_one_by_one(base_transformers, test_wav):
    from whisper_finetune.data.audio import load_audio

    audio = load_audio(test_wav)
    head, tail = audio[: 4 * 16000], audio[4 * 16000 :]
    options = DecodeOptions(language="zh")
    batch = base_transformers.transcribe_batch([head, tail], options)
    assert batch[0].text == base_transformers.transcribe(head, options).text
    assert [t.duration for t in batch] == [4.0, pytest.approx(4.39, abs=0.01)]
    assert batch[1].text, "the second half holds speech"
