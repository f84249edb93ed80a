"""Fixtures: real server processes on loopback, long audio, CER against test.wav."""

from __future__ import annotations

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


def _repeated(tmp_path_factory, test_wav, times: int) -> Path:
    from whisper_finetune.data.audio import load_audio, write_wav

    path = tmp_path_factory.mktemp("long") / f"test-x{times}.wav"
    write_wav(path, np.concatenate([load_audio(test_wav)] * times))
    return path


@pytest.fixture(scope="session")
def long_wav(tmp_path_factory, test_wav) -> Path:
    """test.wav eight times over (about 67 s, 2.1 MB): three 30 s windows to decode."""
    return _repeated(tmp_path_factory, test_wav, 8)


@pytest.fixture(scope="session")
def longer_wav(tmp_path_factory, test_wav) -> Path:
    """test.wav sixteen times over (about 134 s, 4.3 MB): five 30 s windows."""
    return _repeated(tmp_path_factory, test_wav, 16)


@pytest.fixture(scope="session")
def cer(test_reference):
    """CER of a transcript of test.wav against its reference, after the project's
    normalization (punctuation removed, traditional to simplified Chinese)."""
    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.text import normalize_text

    def cer_of(hypothesis: str, reference: str = test_reference) -> float:
        return score([normalize_text(reference)], [normalize_text(hypothesis)], "cer")

    return cer_of
