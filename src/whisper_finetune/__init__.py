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
    "load_audio": "data.audio",
    "Record": "data.manifest",
    "read_manifest": "data.manifest",
    "write_manifest": "data.manifest",
    "normalize_text": "text",
    "cer": "evaluation.metrics",
    "wer": "evaluation.metrics",
    "resolve_model": "models.resolve",
    "DecodeOptions": "inference.transcript",
    "Transcript": "inference.transcript",
    "Segment": "inference.transcript",
    "load_transcriber": "inference.loader",
    "convert_to_ct2": "models.convert",
    "EvalConfig": "evaluation.evaluate",
    "evaluate": "evaluation.evaluate",
    "FinetuneConfig": "training.config",
    "finetune": "training.train",
    "merge_adapter": "training.merge",
    "create_app": "serving.server",
    "DemoConfig": "demo.demo",
    "run_demo": "demo.demo",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"whisper_finetune.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'whisper_finetune' has no attribute {name!r}")
