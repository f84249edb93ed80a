"""Shared fixtures: paths to the real data and a tiny random Whisper built once per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "test.wav").is_file():
        pytest.fail(f"{SHARED_DATA}/test.wav is missing: the real-speech tests need ../shared/data")
    return SHARED_DATA


@pytest.fixture(scope="session")
def test_wav(shared_data) -> Path:
    return shared_data / "test.wav"


@pytest.fixture(scope="session")
def test_reference(shared_data) -> str:
    return json.loads((shared_data / "test.json").read_text(encoding="utf-8"))[0]["sentence"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, d_model 64 random Whisper with the real multilingual tokenizer."""
    from whisper_finetune.models import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny") / "whisper-tiny-random")


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread; on a busy machine two threads that wait
    for each other at every small op were seen to be 6x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
