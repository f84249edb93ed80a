"""Data that ships inside the package: real Mandarin recordings with their licences.

The demo guards against forgetting with these, and the tests transcribe them, so a clone
or an installed wheel needs nothing outside itself. Sources and licences:
``real_speech/NOTICE.md``.
"""

from __future__ import annotations

from pathlib import Path

REAL_SPEECH_DIR = Path(__file__).resolve().parent / "real_speech"


def real_speech_manifest() -> Path:
    """All shipped real recordings (``real-dev`` plus ``test.wav``): the guard set."""
    return REAL_SPEECH_DIR / "real-speech.jsonl"


def real_dev_manifest() -> Path:
    """The seven ``real-dev`` recordings alone."""
    return REAL_SPEECH_DIR / "real-dev" / "manifest.jsonl"


def real_zh_dev_manifest() -> Path:
    """40 more real recordings (5.8 min: FLEURS, THCHS-30, AISHELL-3, spontaneous prompts).

    Disjoint from :func:`real_speech_manifest`'s clips; sources and licences in
    ``real_speech/real-zh-dev/README.md`` and on each manifest line.
    """
    return REAL_SPEECH_DIR / "real-zh-dev" / "manifest.jsonl"


def test_wav_manifest() -> Path:
    """``test.wav`` alone, as a JSON-list manifest."""
    return REAL_SPEECH_DIR / "test.json"


def test_wav() -> Path:
    """8.4 s of real Mandarin (from yeyupiaoling/Whisper-Finetune, Apache-2.0)."""
    return REAL_SPEECH_DIR / "test.wav"
