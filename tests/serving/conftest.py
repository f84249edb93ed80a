"""Fixtures: real server processes on loopback, long audio of distinct real clips, CER."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from serving_live import server_env, start_server, stop_server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """An open server: no key, default queue."""
    server = start_server(tmp_path_factory.mktemp("serve") / "open.log")
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory):
    """A server with a key from the environment, one worker, no queue, a 5 MiB upload limit."""
    key = "test-key-123"
    server = start_server(
        tmp_path_factory.mktemp("serve") / "keyed.log",
        "--workers=1",
        "--max_queue=0",
        "--max_upload_mb=5",
        env=server_env(WHISPER_FINETUNE_API_KEY=key),
        api_key=key,
    )
    yield server
    stop_server(server)


PAUSE_SECONDS = 0.5  # silence between two clips of the long files


@dataclasses.dataclass(frozen=True)
class Clip:
    """One recording inside a long file: where it lies (seconds) and what it says."""

    start: float
    end: float
    sentence: str


def _concatenated(folder: Path, name: str, min_seconds: float) -> tuple[Path, list[Clip]]:
    """Distinct real recordings end to end (``real-zh-dev``'s 40, then the 8 of
    ``real-speech``), each followed by a short pause, until ``min_seconds``: audio built by
    repeating one clip measures the repetition, not the decoder (field notes)."""
    from whisper_finetune.assets import real_speech_manifest, real_zh_dev_manifest
    from whisper_finetune.data.audio import SAMPLE_RATE, load_audio, write_wav
    from whisper_finetune.data.manifest import read_manifest

    records = [*read_manifest(real_zh_dev_manifest()), *read_manifest(real_speech_manifest())]
    pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), np.float32)
    pieces, clips, total = [], [], 0
    for record in records:
        if total >= min_seconds * SAMPLE_RATE:
            break
        audio = load_audio(record.audio_path)
        clips.append(Clip(total / SAMPLE_RATE, (total + audio.size) / SAMPLE_RATE, record.sentence))
        pieces += [audio, pause]
        total += audio.size + pause.size
    if total < min_seconds * SAMPLE_RATE:
        raise ValueError(f"the 48 shipped clips last {total / SAMPLE_RATE:.1f} s < {min_seconds} s")
    return write_wav(folder / name, np.concatenate(pieces)), clips


@pytest.fixture(scope="session")
def long_audio(tmp_path_factory) -> dict[str, tuple[Path, list[Clip]]]:
    """The long files and their clips: ``long`` (8 clips, 66 s: three 30 s windows to
    decode) and ``longer`` (15 clips, 138 s: five windows)."""
    folder = tmp_path_factory.mktemp("long")
    return {
        "long": _concatenated(folder, "long.wav", 65),
        "longer": _concatenated(folder, "longer.wav", 130),
    }


@pytest.fixture(scope="session")
def long_wav(long_audio) -> Path:
    """Eight distinct real recordings end to end (66 s, 2.1 MB); clips: ``long_audio``."""
    return long_audio["long"][0]


@pytest.fixture(scope="session")
def longer_wav(long_audio) -> Path:
    """Fifteen distinct real recordings end to end (138 s, 4.4 MB)."""
    return long_audio["longer"][0]


@pytest.fixture(scope="session")
def cer(test_reference):
    """CER of a transcript of test.wav against its reference, after the project's
    normalization (punctuation removed, traditional to simplified Chinese)."""
    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.text import normalize_text

    def cer_of(hypothesis: str, reference: str = test_reference) -> float:
        return score([normalize_text(reference)], [normalize_text(hypothesis)], "cer")

    return cer_of
