"""whisper.cpp on long audio: the CTranslate2 backend's path (Silero VAD chunks, each
decoded alone, early ends decoded again), on a tiny random GGML model."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_finetune.inference.transcript import DecodeOptions

pytest.importorskip("pywhispercpp")

OPTIONS = DecodeOptions(language="zh", max_new_tokens=4)


@pytest.fixture(scope="module")
def tiny_ggml(tmp_path_factory):
    from whisper_finetune.models.ggml import convert_to_ggml
    from whisper_finetune.models.tiny import build_tiny_whisper

    folder = tmp_path_factory.mktemp("tiny-cpp")
    model = build_tiny_whisper(folder / "hf", ffn_dim=256)  # whisper.cpp needs 4 x d_model
    return convert_to_ggml(model, folder / "ggml", quantization="q8_0")


@pytest.fixture
def calls(tiny_ggml, monkeypatch):
    """A whisper.cpp transcriber whose decoding calls are recorded: (seconds, no_context)."""
    from whisper_finetune.inference.whispercpp import WhisperCppTranscriber

    def load(**kwargs):
        t = WhisperCppTranscriber(tiny_ggml, cpu_threads=2, progress=False, **kwargs)
        seen = []
        one, params = t._one, t._params

        def spy(samples, options):
            seen.append((samples.size / 16000, params(options).no_context))
            return one(samples, options)

        monkeypatch.setattr(t, "_one", spy)
        return t, seen

    return load


def test_long_audio_is_decoded_as_vad_chunks_each_from_a_clean_context(calls, zh_dev_speech):
    from whisper_finetune.inference.whispercpp import LONG_AUDIO_SECONDS

    speech = zh_dev_speech(LONG_AUDIO_SECONDS + 5)  # different recordings, 1 s pauses
    t, seen = calls()
    result = t.transcribe(speech.samples, OPTIONS)
    assert len(seen) >= 2 and all(s <= 30.0 for s, _ in seen)  # chunks of at most 30 s
    assert all(no_context for _, no_context in seen)  # no text carried across chunks
    assert sum(s for s, _ in seen) < speech.samples.size / 16000  # only speech, no pauses
    assert result.duration == pytest.approx(speech.samples.size / 16000)
    assert all(0 <= s.start <= s.end <= result.duration for s in result.segments)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)

    # asked to carry the text over: whisper.cpp's own windows over the whole audio
    seen.clear()
    t.transcribe(
        speech.samples,
        DecodeOptions(language="zh", max_new_tokens=4, condition_on_previous_text=True),
    )
    assert [round(s) for s, _ in seen] == [round(speech.samples.size / 16000)]
    assert seen[0][1] is False
    # shorter audio: one call behind the VAD gate, as before
    seen.clear()
    t.transcribe(speech.samples[: 40 * 16000], OPTIONS)
    assert [round(s) for s, _ in seen] == [40]


def test_long_silence_decodes_nothing_and_the_old_path_stays_available(calls):
    from whisper_finetune.inference.whispercpp import LONG_AUDIO_SECONDS

    silence = np.zeros(int(LONG_AUDIO_SECONDS + 5) * 16000, np.float32)
    t, seen = calls()
    assert t.transcribe(silence, OPTIONS).text == "" and seen == []  # no speech, no chunk
    own, seen = calls(long_audio_chunks=False)
    own.transcribe(silence, DecodeOptions.plain(language="zh", max_new_tokens=4))
    assert len(seen) == 1  # whisper.cpp's own windows, one call
    with pytest.raises(ValueError, match="only supported by the ct2 backend"):
        t.transcribe(silence, DecodeOptions(language="zh", vad_filter=True))


def test_an_early_end_is_decoded_again_from_there(calls, zh_dev_speech, monkeypatch):
    """A chunk whose text stops early gets its rest decoded (chunks.decode_chunks)."""
    from whisper_finetune.inference.transcript import Segment, Transcript

    speech = zh_dev_speech(65)
    t, seen = calls()
    first = {}

    def early(samples, options):
        seconds = samples.size / 16000
        seen.append((seconds, True))
        if seconds > 20 and not first:
            first["seconds"] = seconds
            return Transcript.from_segments([Segment(0.0, 5.0, "前")], "zh", seconds)
        return Transcript.from_segments([Segment(0.0, seconds - 0.1, "后")], "zh", seconds)

    monkeypatch.setattr(t, "_one", early)
    result = t.transcribe(speech.samples, OPTIONS)
    assert any(abs(s - (first["seconds"] - 5.0)) < 0.01 for s, _ in seen)  # the rest, again
    assert "前后" in result.text
