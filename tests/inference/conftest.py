"""Long real speech for the inference tests: distinct clips end to end, never one clip repeated.

Whisper, conditioned on what it has just written, may write a repeated sentence once
(and Silero may join two copies across a gap into one window), so a test built from
copies of one clip passes or fails on the CPU's int8 arithmetic (issue 25: it passed on
AMD, failed on Intel). Every long audio here is made of different recordings, each of
which whisper-base transcribes well on its own, so losing any one of them costs far more
than the CER margins the tests allow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from whisper_finetune.data.audio import SAMPLE_RATE, load_audio, write_wav

# shipped clips (assets/real_speech) in the order the long audio holds them; whisper-base
# int8 alone on each (AMD and Intel alike within a character): CER 0.12, 0.00, 0.00, 0.15
DISTINCT_CLIPS = (
    "test.wav",
    "real-dev/audio/MOSSTTSD_zh_spk2_moon.wav",
    "real-dev/audio/RapidASR_asr_example_zh.wav",
    "real-dev/audio/MOSSTTSD_zh_spk1_moon.wav",
)


@dataclass(frozen=True)
class Speech:
    """Audio of distinct real clips with their references and where each one lies."""

    samples: np.ndarray
    references: tuple[str, ...]
    spans: tuple[tuple[float, float], ...]  # seconds

    @property
    def reference(self) -> str:
        return "".join(self.references)


def _clips(real_speech) -> list[tuple[np.ndarray, str]]:
    from whisper_finetune.data.manifest import read_manifest

    by_name = {r.audio_path.split("real_speech/", 1)[1]: r for r in read_manifest(real_speech)}
    missing = [n for n in DISTINCT_CLIPS if n not in by_name]
    if missing:
        pytest.fail(f"{real_speech} lacks {missing}: the test clips moved")
    return [(load_audio(by_name[n].audio_path), by_name[n].sentence) for n in DISTINCT_CLIPS]


def _join(parts: list[tuple[np.ndarray, str]], pause: np.ndarray) -> Speech:
    pieces, spans, position = [], [], 0
    for k, (clip, _) in enumerate(parts):
        if k:
            pieces.append(pause)
            position += pause.size
        pieces.append(clip)
        spans.append((position / SAMPLE_RATE, (position + clip.size) / SAMPLE_RATE))
        position += clip.size
    return Speech(np.concatenate(pieces), tuple(t for _, t in parts), tuple(spans))


@pytest.fixture(scope="session")
def distinct_speech(real_speech) -> Speech:
    """Four different recordings with 0.5 s pauses: 33 s, past one 30 s window."""
    return _join(_clips(real_speech), np.zeros(SAMPLE_RATE // 2, np.float32))


@pytest.fixture(scope="session")
def gap_speech(real_speech, tmp_path_factory) -> tuple[Speech, object]:
    """test.wav, 15 s of silence and 15 s of noise, then a different recording; and its file."""
    first, second = _clips(real_speech)[:2]
    noise = 0.01 * np.random.default_rng(0).standard_normal(15 * SAMPLE_RATE)
    gap = np.concatenate([np.zeros(15 * SAMPLE_RATE, np.float32), noise.astype(np.float32)])
    speech = _join([first, second], gap)
    path = tmp_path_factory.mktemp("gap") / "gap.wav"
    write_wav(path, speech.samples)
    return speech, path


@pytest.fixture(scope="session")
def zh_dev_speech():
    """``zh_dev_speech(seconds)``: the first whole ``real-zh-dev`` clips (40 different
    recordings) end to end with 1 s pauses, at least ``seconds`` long."""
    from whisper_finetune.assets import real_zh_dev_manifest
    from whisper_finetune.data.manifest import read_manifest

    records = list(read_manifest(real_zh_dev_manifest()))
    pause = np.zeros(SAMPLE_RATE, np.float32)

    def build(seconds: float) -> Speech:
        parts, total = [], 0.0
        for record in records:
            if total >= seconds:
                break
            clip = load_audio(record.audio_path)
            parts.append((clip, record.sentence))
            total += clip.size / SAMPLE_RATE + 1.0
        if total < seconds:
            pytest.fail(f"real-zh-dev holds {total:.0f} s, less than the {seconds} s asked")
        return _join(parts, pause)

    return build
