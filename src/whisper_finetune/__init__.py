"""whisper-finetune: adapt OpenAI Whisper to a language or domain, and run it fast.

The public API is re-exported here and imported lazily, so ``import whisper_finetune``
stays light (no torch) until one of these names is used::

    from whisper_finetune import load_transcriber, DecodeOptions
    t = load_transcriber("embedded:whisper-base", backend="ct2", compute_type="int8")
    print(t.transcribe("test.wav", DecodeOptions(language="zh")).text)
"""

from __future__ import annotations

import importlib

from whisper_finetune.version import __version__

_EXPORTS = {
    "load_audio": "audio",
    "Record": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "normalize_text": "text",
    "cer": "metrics",
    "wer": "metrics",
    "resolve_model": "models",
    "DecodeOptions": "transcript",
    "Transcript": "transcript",
    "Segment": "transcript",
    "load_transcriber": "transcriber",
    "convert_to_ct2": "convert",
    "EvalConfig": "evaluate",
    "evaluate": "evaluate",
    "FinetuneConfig": "train_config",
    "finetune": "train",
    "merge_adapter": "merge",
    "create_app": "server",
    "DemoConfig": "demo",
    "run_demo": "demo",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"whisper_finetune.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'whisper_finetune' has no attribute {name!r}")
