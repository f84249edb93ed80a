"""Shared fixtures: the real recordings shipped in the package, and a tiny random Whisper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisper_finetune.assets import REAL_SPEECH_DIR, real_speech_manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def benchmark_script():
    """``load(name)``: the module of ``benchmarks/<name>.py`` (the scripts are not a package)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def real_speech_dir() -> Path:
    """The package's real recordings (``test.wav``, ``real-dev``), never ``../shared``."""
    if not (REAL_SPEECH_DIR / "test.wav").is_file():
        pytest.fail(f"{REAL_SPEECH_DIR}/test.wav is missing: the package data was not installed")
    return REAL_SPEECH_DIR


@pytest.fixture(scope="session")
def real_speech(real_speech_dir) -> Path:
    """The guard set's manifest: seven real-dev clips plus test.wav."""
    return real_speech_manifest()


@pytest.fixture(scope="session")
def test_wav(real_speech_dir) -> Path:
    return real_speech_dir / "test.wav"


@pytest.fixture(scope="session")
def test_reference(real_speech_dir) -> str:
    return json.loads((real_speech_dir / "test.json").read_text(encoding="utf-8"))[0]["sentence"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, d_model 64 random Whisper with the real multilingual tokenizer."""
    from whisper_finetune.models.tiny import build_tiny_whisper

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


@pytest.fixture(scope="session")
def tiny_v3_model_dir(tmp_path_factory) -> Path:
    """The same tiny random Whisper shaped like large-v3: 128 mels, 51,866 tokens."""
    from whisper_finetune.models.tiny import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-v3") / "whisper-tiny-v3", v3=True)
