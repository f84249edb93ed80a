"""CTranslate2's batched decoding keeps Whisper's robust decoding (inference/ct2.py, chunks.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from whisper_finetune.inference.transcript import DecodeOptions

ROBUST = DecodeOptions(language="zh")


def _seg(text, avg_logprob=-0.2, no_speech_prob=0.01):
    return SimpleNamespace(text=text, avg_logprob=avg_logprob, no_speech_prob=no_speech_prob)


def test_whispers_checks_on_one_window():
    from whisper_finetune.inference.chunks import window_verdict as _verdict

    assert _verdict([_seg("今天天气很好"), _seg("我们去公园")], ROBUST) is None
    assert _verdict([_seg("好的" * 60)], ROBUST) == "fallback"  # loops: compression > 2.4
    assert _verdict([_seg("今天天气很好", avg_logprob=-1.5)], ROBUST) == "fallback"
    # likely silence: high no-speech probability and an unlikely text give no text
    assert _verdict([_seg("谢谢观看", avg_logprob=-1.5, no_speech_prob=0.9)], ROBUST) == "silence"
    # a likely text stands whatever the no-speech probability
    assert _verdict([_seg("今天天气很好", no_speech_prob=0.9)], ROBUST) is None
    assert _verdict([], ROBUST) is None
    # no robust decoding: no thresholds; no fallback step: nothing to fall back to
    assert _verdict([_seg("好的" * 60, avg_logprob=-3)], DecodeOptions.plain()) is None
    no_step = DecodeOptions(language="zh", temperature_increment_on_fallback=None)
    assert _verdict([_seg("好的" * 60)], no_step) is None


@pytest.fixture(scope="module")
def tiny_ct2_dir(tiny_model_dir, tmp_path_factory):
    from whisper_finetune.models.convert import convert_to_ct2

    return str(
        convert_to_ct2(tiny_model_dir, tmp_path_factory.mktemp("ct2") / "ct2", quantization="int8")
    )


def test_a_failed_window_in_a_batch_gets_the_sequential_fallback(tiny_ct2_dir, real_speech):
    """The random tiny model's babble loops: each such clip is decoded again by the
    sequential decoder (Whisper's fallback temperatures); the others keep the batch's text."""
    from whisper_finetune.data.audio import load_audio
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.inference.ct2 import CT2Transcriber

    clips = [load_audio(r.audio_path) for r in read_manifest(real_speech)][:4]
    model = CT2Transcriber(tiny_ct2_dir, device="cpu", cpu_threads=1, batch_size=4, pad_audio=True)
    options = DecodeOptions(language="zh", max_new_tokens=40, vad_gate=False, seed=0)
    sequential, pads = [], set()
    real = model._transcribe

    def spy(samples, opts, batched, batch_size=None, pad_audio=None):
        if not batched:
            sequential.append(samples.size)
            pads.add(pad_audio)
        return real(samples, opts, batched, batch_size, pad_audio)

    model._transcribe = spy
    batched = model.transcribe_batch(clips, options)
    assert sequential, "the tiny model's babble should fail Whisper's checks"
    plain = model.transcribe_batch(clips, DecodeOptions.plain(language="zh", max_new_tokens=40))
    for clip, got, once in zip(clips, batched, plain, strict=True):
        if clip.size in sequential:  # fell back: the sequential decoder's text, seeded
            assert got.text == real(clip, options, False).text
        else:  # stood: the batch's own text, as one plain pass gives it
            assert got.text == once.text
    assert pads == {True}  # the fallback pads each clip as its batched pass did
    # long audio's chunks keep faster-whisper's zero log-mel padding, fallback included
    pads.clear()
    model._unpadded(clips, options, 4)
    assert pads == {False}


def test_a_chunk_whose_text_ends_early_is_decoded_again_from_there():
    """A VAD chunk is speech from end to end: text that stops 9.4 s into a 28.4 s chunk
    (seen with whisper-base) leaves speech undecoded, so the rest is decoded again."""
    from whisper_finetune.inference.chunks import TAIL_PASSES, decode_chunks
    from whisper_finetune.inference.transcript import Segment, Transcript

    sr = 16000
    chunks = [np.zeros(int(28.4 * sr), np.float32), np.zeros(20 * sr, np.float32)]
    seen = []

    def batched(clips, options, batch_size):
        seen.append([round(c.size / sr, 1) for c in clips])
        out = []
        for c in clips:
            seconds = c.size / sr
            # the long chunk ends early twice (at 9.4 s of what it is given), then fully
            end = 9.4 if round(seconds, 1) in (28.4, 19.0) else seconds - 0.2
            out.append(
                Transcript.from_segments([Segment(0.0, end, f"{seconds:.1f}")], "zh", seconds)
            )
        return out

    found, languages = decode_chunks(chunks, DecodeOptions(language="zh"), batched, 12)
    # pass 1: both chunks; pass 2: the 19.0 s left of the first; pass 3: its last 9.6 s
    assert seen == [[28.4, 20.0], [19.0], [9.6]]
    assert [(round(s.start, 1), round(s.end, 1), s.text) for s in found[0]] == [
        (0.0, 9.4, "28.4"),
        (9.4, 18.8, "19.0"),
        (18.8, 28.2, "9.6"),
    ]
    assert [(s.start, round(s.end, 1)) for s in found[1]] == [(0.0, 19.8)]
    assert languages == ["zh", "zh"] and TAIL_PASSES >= 2


def test_tails_stop_after_the_last_pass():
    from whisper_finetune.inference.chunks import TAIL_PASSES, decode_chunks
    from whisper_finetune.inference.transcript import Segment, Transcript

    calls = []

    def always_early(clips, options, batch_size):
        calls.append(len(clips))
        return [
            Transcript.from_segments([Segment(0.0, 1.0, "x")], "zh", c.size / 16000) for c in clips
        ]

    found, _ = decode_chunks([np.zeros(30 * 16000, np.float32)], DecodeOptions(), always_early, 8)
    assert len(calls) == 1 + TAIL_PASSES and len(found[0]) == 1 + TAIL_PASSES
