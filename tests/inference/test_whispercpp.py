"""whisper.cpp backend on our own GGML export of whisper-base: accuracy, parity, options."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_finetune.evaluation.metrics import score
from whisper_finetune.inference.transcript import DecodeOptions
from whisper_finetune.text import normalize_text

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_q8(tmp_path_factory):
    from whisper_finetune.models.ggml import convert_to_ggml

    return convert_to_ggml(
        "embedded:whisper-base", tmp_path_factory.mktemp("ggml") / "q8", quantization="q8_0"
    )


def _cer(reference: str, text: str) -> float:
    return score([normalize_text(reference)], [normalize_text(text)], "cer")


def test_f16_export_gives_the_transformers_greedy_text(test_wav, test_reference, tmp_path, capsys):
    """The acceptance check, through the CLI: convert, then both models transcribe the sample."""
    from whisper_finetune.cli import main
    from whisper_finetune.inference.loader import load_transcriber

    out = tmp_path / "f16"
    argv = ["convert", "--format=ggml", "--model_path=embedded:whisper-base"]
    argv += [f"--output_dir={out}", f"--sample={test_wav}", "--language=zh", "--device=cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    lines = dict(line.split(":", 1) for line in printed.splitlines() if ":" in line)
    assert lines["transformers"].strip() == lines["ggml"].strip(), printed
    assert "CER ggml vs transformers: 0.0000 (identical)" in printed
    assert (out / "ggml-model.bin").stat().st_size > 140e6

    whispercpp = load_transcriber(out, "whispercpp", cpu_threads=2)
    result = whispercpp.transcribe(str(test_wav), DecodeOptions(language="zh"))
    assert _cer(test_reference, result.text) <= 0.15, result.text
    assert result.text == lines["ggml"].strip()


def test_q8_0_export_transcribes_real_speech(base_q8, test_wav, test_reference):
    from whisper_finetune.inference.loader import load_transcriber

    assert base_q8.name == "ggml-model-q8_0.bin" and base_q8.stat().st_size < 90e6
    transcriber = load_transcriber(base_q8.parent, "whispercpp", compute_type="q8_0", cpu_threads=2)
    for options in (DecodeOptions(language="zh"), DecodeOptions(language="zh", beam_size=5)):
        result = transcriber.transcribe(str(test_wav), options)
        assert _cer(test_reference, result.text) <= 0.15, (options.beam_size, result.text)
        assert result.language == "zh" and result.duration == pytest.approx(8.39, abs=0.01)
        assert all(0 <= s.start <= s.end <= result.duration for s in result.segments)
    with pytest.raises(ValueError, match="not a q5_0 model"):
        load_transcriber(base_q8, "whispercpp", compute_type="q5_0")


def test_options_reach_whisper_cpp(base_q8, test_wav, distinct_speech):
    from whisper_finetune.data.audio import load_audio
    from whisper_finetune.inference.loader import load_transcriber

    transcriber = load_transcriber(base_q8, "whispercpp", cpu_threads=2)
    audio = load_audio(test_wav)
    detected = transcriber.transcribe(audio)  # no language: whisper.cpp detects it
    assert detected.language == "zh"
    # a simplified-Chinese prompt steers the script, as with the other backends
    prompted = transcriber.transcribe(
        audio, DecodeOptions(language="zh", initial_prompt="以下是普通话的句子。")
    )
    assert "几" in prompted.text and "幾" not in prompted.text, prompted.text
    english = transcriber.transcribe(audio, DecodeOptions(language="zh", task="translate"))
    assert sum(c.isascii() and c.isalpha() for c in english.text) > 10, english.text
    plain = transcriber.transcribe(audio, DecodeOptions(language="zh", without_timestamps=True))
    assert [(s.start, s.end) for s in plain.segments] == [(0.0, plain.duration)]
    # long audio (four different recordings, 33 s): past one 30 s window, and the batch API
    result = transcriber.transcribe(distinct_speech.samples, DecodeOptions(language="zh"))
    assert result.duration > 30 and result.segments[-1].end > 30
    assert _cer(distinct_speech.reference, result.text) <= 0.15, result.text
    batch = transcriber.transcribe_batch([audio[:32000], audio], DecodeOptions(language="zh"))
    assert [t.duration for t in batch] == [2.0, pytest.approx(8.39, abs=0.01)]
    with pytest.raises(ValueError, match="only supported by the ct2 backend"):
        transcriber.transcribe(audio, DecodeOptions(language="zh", vad_filter=True))


def test_robust_decoding_maps_onto_whisper_cpp_fallback_and_the_vad_gate(base_q8):
    from whisper_finetune.inference.loader import load_transcriber

    transcriber = load_transcriber(base_q8, "whispercpp", cpu_threads=2)
    robust = transcriber._params(DecodeOptions(language="zh"))
    assert robust.temperature_inc == pytest.approx(0.2)
    assert robust.entropy_thold == pytest.approx(2.4)
    assert robust.logprob_thold == pytest.approx(-1.0)
    assert robust.no_speech_thold == pytest.approx(0.6)
    plain = transcriber._params(DecodeOptions.plain(language="zh"))
    assert plain.temperature_inc == 0.0
    assert plain.entropy_thold == 0.0 and plain.logprob_thold < -1e8
    assert plain.no_speech_thold == 1.0
    # 20 s of silence: the VAD gate finds no speech, so nothing is decoded
    silence = transcriber.transcribe(np.zeros(20 * 16000, np.float32), DecodeOptions(language="zh"))
    assert silence.text == "" and silence.segments == ()


def test_long_distinct_speech_goes_through_vad_chunks(base_q8, zh_dev_speech):
    """65 s of different real recordings: the VAD-chunk path (inference/chunks.py) on
    whisper.cpp, close to what the clips give one by one (benchmarks/long_audio.py
    measures the whole 385 s: 0.133 long-form against 0.123 clip by clip)."""
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.whispercpp import LONG_AUDIO_SECONDS

    speech = zh_dev_speech(LONG_AUDIO_SECONDS + 5)
    transcriber = load_transcriber(base_q8, "whispercpp", cpu_threads=2)
    calls = []
    one = transcriber._one
    transcriber._one = lambda samples, options: calls.append(samples.size) or one(samples, options)
    result = transcriber.transcribe(speech.samples, DecodeOptions(language="zh"))
    assert len(calls) >= 2 and max(calls) <= 30 * 16000  # VAD chunks, not one long call
    assert result.segments[-1].end > speech.spans[-1][0]  # the last clip, at its time
    cer = score([normalize_text(speech.reference, normalize_numbers=True)],
                [normalize_text(result.text, normalize_numbers=True)], "cer")  # fmt: skip
    # measured 0.083 (18 of 218 characters); a lost clip of 15 characters would fail it
    assert cer <= 0.15, (cer, result.text)
