"""Slices of long files decode only the slice and equal a cut of the whole file's decode;
a truncated WAV is read with a warning that names the file and both lengths."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest
import soundfile as sf

from whisper_finetune.data import codec
from whisper_finetune.data.audio import SAMPLE_RATE, audio_duration, load_audio, write_wav
from whisper_finetune.data.wavheader import wav_truncation

SECONDS = 40.0
# (suffix, container, encoder, source rate)
CODECS = [
    ("opus", "ogg", "libopus", 48000),
    ("mp3", "mp3", "libmp3lame", 44100),
    ("m4a", "mp4", "aac", 44100),
]
# the resampler is deterministic and both decodes start on a sample where the source and
# 16 kHz grids meet, so the slices match a cut of the full decode to float rounding
TOLERANCE = 1e-4


def _signal(rate: int, seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    sweep = 0.3 * np.sin(2 * np.pi * (300 + 200 * np.sin(t / 3)) * t)
    noise = 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return (sweep + noise).astype(np.float32)


def _encode(path, x: np.ndarray, rate: int, fmt: str, encoder: str):
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = out.add_stream(encoder, rate=rate)
        stream.layout = "mono"
        for i in range(0, x.size, rate):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[None, i : i + rate]), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    files = {}
    for suffix, fmt, encoder, rate in CODECS:
        files[suffix] = _encode(folder / f"long.{suffix}", _signal(rate), rate, fmt, encoder)
    # stereo float WAV at 44.1 kHz: soundfile seeks, the resampler sees context
    x = _signal(44100)
    sf.write(folder / "long.wav", np.stack([x, -0.5 * x], axis=1), 44100, subtype="FLOAT")
    files["wav"] = folder / "long.wav"
    return files


SLICES = {"start": (0.25, 10.25), "middle": (17.37, 27.37), "end": (33.0, 43.0)}


@pytest.mark.parametrize("where", list(SLICES))
@pytest.mark.parametrize("suffix", ["opus", "mp3", "m4a", "wav"])
def test_slice_equals_a_cut_of_the_full_decode(long_files, suffix, where):
    path = long_files[suffix]
    start, end = SLICES[where]
    full = load_audio(path)
    part = load_audio(path, start, end)
    expected = full[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]  # end: clipped
    assert part.size == expected.size
    np.testing.assert_allclose(part, expected, atol=TOLERANCE)
    assert np.abs(part).max() > 0.1  # real audio, not silence


@pytest.mark.parametrize("suffix", ["opus", "mp3", "m4a"])
def test_a_slice_of_a_long_file_decodes_only_around_the_slice(long_files, suffix, monkeypatch):
    decoded = []
    real = codec._frame_mono

    def counting(frame):
        decoded.append(frame.samples / frame.sample_rate)
        return real(frame)

    monkeypatch.setattr(codec, "_frame_mono", counting)
    load_audio(long_files[suffix], 20.0, 25.0)
    seconds = sum(decoded)
    # 5 s asked; half a second of pre-roll, a little after, up to a keyframe interval more
    assert 5.0 <= seconds < 7.0, seconds


def test_slice_start_past_the_end_still_names_the_file(long_files):
    with pytest.raises(ValueError, match="beyond the end") as excinfo:
        load_audio(long_files["opus"], 45.0, 50.0)
    assert "long.opus" in str(excinfo.value)


@pytest.fixture
def truncated_wav(tmp_path):
    """A WAV whose header promises 8.4 s while 3.1 s are there (a copy that stopped)."""
    whole = write_wav(tmp_path / "whole.wav", np.full(round(8.4 * SAMPLE_RATE), 0.1, np.float32))
    data = whole.read_bytes()
    cut = tmp_path / "cut_short.wav"
    cut.write_bytes(data[: 44 + round(3.1 * SAMPLE_RATE) * 2])
    return cut


def test_truncated_wav_is_found_from_its_header(truncated_wav, tmp_path):
    promised, present = wav_truncation(truncated_wav)
    assert promised == pytest.approx(8.4)
    assert present == pytest.approx(3.1)
    assert wav_truncation(tmp_path / "whole.wav") is None


def test_truncated_wav_warns_with_the_file_and_both_lengths(truncated_wav, caplog):
    with caplog.at_level(logging.WARNING, logger="whisper_finetune.data.audio"):
        samples = load_audio(truncated_wav)
        duration = audio_duration(truncated_wav)
    assert samples.size == round(3.1 * SAMPLE_RATE)
    assert duration == pytest.approx(3.1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per file, not once per read
    assert "cut_short.wav" in warnings[0]
    assert "8.40" in warnings[0] and "3.10" in warnings[0]
