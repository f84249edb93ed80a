"""Decoding, resampling, downmixing, slicing and error reporting of whisper_finetune.data.audio.

Every fixture is synthesized here: tones generated with NumPy and encoded with PyAV.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from whisper_finetune.data.audio import (
    SAMPLE_RATE,
    AudioError,
    audio_duration,
    load_audio,
    resample,
    write_wav,
)

TONE_HZ = 440.0
AMPLITUDE = 0.5
SECONDS = 2.0
# Lossy codecs pad or trim up to a codec frame (AAC in PyAV-written m4a keeps its
# 1024-sample priming: ~23 ms at 44.1 kHz, plus padding).
LENGTH_TOLERANCE_S = 0.06

# (suffix, container format, encoder, sample rate, encoder options)
FORMATS = [
    ("wav", "wav", "pcm_s16le", 44100, {}),
    ("flac", "flac", "flac", 48000, {}),
    ("mp3", "mp3", "libmp3lame", 44100, {}),
    ("m4a", "mp4", "aac", 44100, {}),
    ("opus.ogg", "ogg", "libopus", 48000, {}),
    # FFmpeg's native vorbis encoder is marked experimental, hence strict=-2
    ("vorbis.ogg", "ogg", "vorbis", 44100, {"strict": "-2"}),
    ("webm", "webm", "libopus", 48000, {}),
]
FORMAT_IDS = [f[0] for f in FORMATS]


def tone(freq: float, rate: int, seconds: float = SECONDS, amplitude: float = AMPLITUDE):
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(path: Path, channels: np.ndarray, rate: int, fmt: str, codec: str, options=None):
    """Encode ``channels`` (shape (channels, samples), float) with PyAV."""
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # an FFmpeg build without this encoder
        pytest.skip(f"PyAV has no {codec} encoder")
    channels = np.ascontiguousarray(channels, dtype=np.float32)
    layout = "mono" if channels.shape[0] == 1 else "stereo"
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, options=options or {})
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(channels, format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def peak_frequencies(x: np.ndarray, n: int = 1, rate: int = SAMPLE_RATE) -> list[float]:
    """The ``n`` strongest frequencies of ``x`` in Hz, ascending."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return sorted(float(f) for f in freqs[np.argsort(spectrum)[-n:]])


def band_amplitude(x: np.ndarray, freq: float, rate: int = SAMPLE_RATE) -> float:
    """Amplitude of the sinusoid at ``freq`` (single-bin DFT projection)."""
    t = np.arange(len(x)) / rate
    return float(2 * np.abs(np.mean(x * np.exp(-2j * np.pi * freq * t))))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """Stereo 440 Hz tones in every format, encoded once per module."""
    folder = tmp_path_factory.mktemp("encoded")
    cache: dict[str, Path] = {}

    def get(suffix: str) -> Path:
        if suffix not in cache:
            _, fmt, codec, rate, options = FORMATS[FORMAT_IDS.index(suffix)]
            x = tone(TONE_HZ, rate)
            cache[suffix] = encode(
                folder / f"tone.{suffix}", np.stack([x, x]), rate, fmt, codec, options
            )
        return cache[suffix]

    return get


@pytest.mark.parametrize("suffix", FORMAT_IDS)
def test_decodes_every_format_to_16k_mono_float32(encoded, suffix):
    x = load_audio(encoded(suffix))
    assert x.dtype == np.float32
    assert x.ndim == 1
    assert abs(len(x) / SAMPLE_RATE - SECONDS) <= LENGTH_TOLERANCE_S
    assert peak_frequencies(x)[0] == pytest.approx(TONE_HZ, abs=2)
    # identical channels averaged: the source amplitude, not 3 dB louder
    assert band_amplitude(x, TONE_HZ) == pytest.approx(AMPLITUDE, rel=0.1)
    assert np.abs(x).max() < 0.7


@pytest.mark.parametrize("suffix", [s for s in FORMAT_IDS if s != "vorbis.ogg"])
def test_audio_duration_from_metadata(encoded, suffix):
    # (FFmpeg's experimental vorbis encoder writes wrong granule positions, so its
    # container duration is wrong; real-world vorbis files are fine.)
    assert audio_duration(encoded(suffix)) == pytest.approx(SECONDS, abs=LENGTH_TOLERANCE_S)


def test_audio_duration_is_exact_for_wav(tmp_path):
    path = tmp_path / "exact.wav"
    sf.write(path, np.zeros(12345, dtype=np.float32), 22050)
    assert audio_duration(path) == 12345 / 22050


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("suffix", ["wav", "mp3"])
def test_resamples_any_rate(tmp_path, rate, suffix):
    freq = 1000.0
    x = tone(freq, rate)
    path = tmp_path / f"r{rate}.{suffix}"
    if suffix == "wav":
        sf.write(path, x, rate)
    else:
        encode(path, x[None], rate, "mp3", "libmp3lame")
    y = load_audio(path)
    assert abs(len(y) - SECONDS * SAMPLE_RATE) <= (2 if suffix == "wav" else 0.05 * SAMPLE_RATE)
    assert peak_frequencies(y)[0] == pytest.approx(freq, abs=2)
    assert band_amplitude(y, freq) == pytest.approx(AMPLITUDE, rel=0.1)


def test_resample_keeps_a_tone(tmp_path):
    y = resample(tone(1000.0, 44100), 44100, SAMPLE_RATE)
    assert abs(len(y) - SECONDS * SAMPLE_RATE) <= 2
    assert band_amplitude(y[1000:-1000], 1000.0) == pytest.approx(AMPLITUDE, rel=0.02)


@pytest.mark.parametrize(
    "suffix, fmt, codec, rate",
    [("wav", "wav", "pcm_s16le", 44100), ("webm", "webm", "libopus", 48000)],
    ids=["wav-soundfile", "webm-pyav"],
)
def test_stereo_is_averaged_to_mono(tmp_path, suffix, fmt, codec, rate):
    left, right = tone(300.0, rate, amplitude=0.4), tone(1000.0, rate, amplitude=0.4)
    path = encode(tmp_path / f"lr.{suffix}", np.stack([left, right]), rate, fmt, codec)
    y = load_audio(path)
    assert peak_frequencies(y, n=2) == pytest.approx([300.0, 1000.0], abs=2)
    assert band_amplitude(y, 300.0) == pytest.approx(0.2, rel=0.1)
    assert band_amplitude(y, 1000.0) == pytest.approx(0.2, rel=0.1)


@pytest.mark.parametrize(
    "suffix, fmt, codec, rate",
    [
        ("wav", "wav", "pcm_s16le", 44100),
        ("flac", "flac", "flac", 16000),
        ("mp3", "mp3", "libmp3lame", 44100),
    ],
    ids=["wav", "flac", "mp3"],
)
def test_slicing(tmp_path, suffix, fmt, codec, rate):
    # one second of 440 Hz, then one second of 880 Hz
    x = np.concatenate([tone(440.0, rate, 1.0), tone(880.0, rate, 1.0)])
    path = encode(tmp_path / f"two.{suffix}", x[None], rate, fmt, codec)

    first = load_audio(path, start=0.1, end=0.9)
    second = load_audio(path, start=1.2, end=1.7)
    assert len(first) == round(0.8 * SAMPLE_RATE)
    assert len(second) == round(0.5 * SAMPLE_RATE)
    assert peak_frequencies(first)[0] == pytest.approx(440.0, abs=3)
    assert peak_frequencies(second)[0] == pytest.approx(880.0, abs=3)

    # start only; end past the end of the file is clipped to it
    assert abs(len(load_audio(path, start=1.5)) - 0.5 * SAMPLE_RATE) <= 0.03 * SAMPLE_RATE
    assert abs(len(load_audio(path, start=1.5, end=9.0)) - 0.5 * SAMPLE_RATE) <= 0.03 * SAMPLE_RATE


def test_slice_matches_full_decode(tmp_path):
    rate = 44100
    x = tone(440.0, rate) * np.linspace(0.2, 1.0, round(rate * SECONDS), dtype=np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    full = load_audio(path)
    part = load_audio(path, start=0.5, end=1.5)
    assert len(part) == SAMPLE_RATE
    # away from the slice edges, where the resampler's filter sees different context
    np.testing.assert_allclose(part[200:-200], full[8000 + 200 : 24000 - 200], atol=2e-3)


@pytest.mark.parametrize("suffix", ["wav", "mp3"])
@pytest.mark.parametrize(
    "start, end, message",
    [
        (-0.5, None, "start"),
        (1.0, 1.0, "end"),
        (1.5, 0.5, "end"),
        (5.0, None, "beyond"),
        (2.5, 3.0, "beyond"),
    ],
)
def test_invalid_slices_name_the_file(encoded, suffix, start, end, message):
    path = encoded(suffix)
    with pytest.raises(AudioError, match=message) as excinfo:
        load_audio(path, start=start, end=end)
    assert path.name in str(excinfo.value)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_FILES = {
    "random.mp3": lambda d, enc: _write_bytes(
        d / "random.mp3", np.random.default_rng(0).bytes(20000)
    ),
    "random.wav": lambda d, enc: _write_bytes(
        d / "random.wav", np.random.default_rng(1).bytes(20000)
    ),
    "truncated.wav": lambda d, enc: _write_bytes(d / "truncated.wav", enc("wav").read_bytes()[:30]),
    "truncated.flac": lambda d, enc: _write_bytes(
        d / "truncated.flac", enc("flac").read_bytes()[:20]
    ),
    "truncated.m4a": lambda d, enc: _write_bytes(d / "truncated.m4a", enc("m4a").read_bytes()[:40]),
    "empty.wav": lambda d, enc: _write_bytes(d / "empty.wav", b""),
    "empty.mp3": lambda d, enc: _write_bytes(d / "empty.mp3", b""),
    "zero_samples.wav": lambda d, enc: write_wav(d / "zero_samples.wav", np.zeros(0, np.float32)),
    "notes.wav": lambda d, enc: _write_bytes(
        d / "notes.wav", "这不是音频 not audio\n".encode() * 50
    ),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, encoded, name):
    path = BAD_FILES[name](tmp_path, encoded)
    with pytest.raises(AudioError) as excinfo:
        load_audio(path)
    assert name in str(excinfo.value)


@pytest.mark.parametrize("name", ["random.mp3", "truncated.wav", "empty.wav", "notes.wav"])
def test_audio_duration_of_bad_files(tmp_path, encoded, name):
    path = BAD_FILES[name](tmp_path, encoded)
    with pytest.raises(AudioError) as excinfo:
        audio_duration(path)
    assert name in str(excinfo.value)


def test_missing_file(tmp_path):
    path = tmp_path / "no_such_file.flac"
    with pytest.raises(FileNotFoundError, match="no_such_file.flac"):
        load_audio(path)
    with pytest.raises(FileNotFoundError, match="no_such_file.flac"):
        audio_duration(path)


def test_directory_is_not_audio(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(AudioError, match="folder.wav"):
        load_audio(folder)


def test_video_without_audio(tmp_path):
    path = tmp_path / "silent_video.mkv"
    try:
        with av.open(str(path), mode="w") as out:
            stream = out.add_stream("ffv1", rate=1)
            stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except Exception as exc:  # an FFmpeg build without ffv1 or matroska
        pytest.skip(f"cannot write a test video: {exc}")
    with pytest.raises(AudioError, match="no audio stream") as excinfo:
        load_audio(path)
    assert "silent_video.mkv" in str(excinfo.value)


def test_file_object(encoded):
    data = encoded("mp3").read_bytes()
    x = load_audio(io.BytesIO(data))
    assert abs(len(x) / SAMPLE_RATE - SECONDS) <= LENGTH_TOLERANCE_S


def test_sample_rate_argument(encoded):
    x = load_audio(encoded("flac"), sample_rate=8000)
    assert abs(len(x) - SECONDS * 8000) <= 2
    assert peak_frequencies(x, rate=8000)[0] == pytest.approx(TONE_HZ, abs=2)


def test_write_wav_round_trip(tmp_path):
    x = tone(440.0, SAMPLE_RATE)
    path = write_wav(tmp_path / "sub" / "dir" / "out.wav", x)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        SAMPLE_RATE,
        1,
        len(x),
        "PCM_16",
    )
    np.testing.assert_allclose(load_audio(path), x, atol=1 / 32767)
    assert [p.name for p in path.parent.iterdir()] == ["out.wav"]  # no temporary left


def test_write_wav_clips_and_rejects_nan(tmp_path):
    path = write_wav(tmp_path / "clip.wav", np.array([0.0, 1.5, -2.0, 0.25]), sample_rate=8000)
    data, rate = sf.read(path, dtype="int16")
    assert rate == 8000
    assert data.tolist() == [0, 32767, -32768, 8192]
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "nan.wav", np.array([0.0, np.nan]))
    assert not (tmp_path / "nan.wav").exists()


def test_write_wav_stereo_is_downmixed_on_load(tmp_path):
    stereo = np.stack(
        [tone(300.0, SAMPLE_RATE, amplitude=0.4), tone(300.0, SAMPLE_RATE, amplitude=0.4)], axis=1
    )
    path = write_wav(tmp_path / "stereo.wav", stereo)
    assert sf.info(path).channels == 2
    assert band_amplitude(load_audio(path), 300.0) == pytest.approx(0.4, rel=0.02)
