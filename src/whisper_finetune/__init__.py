"""whisper-finetune: adapt OpenAI Whisper to a language or domain, and run it fast."""

from whisper_finetune.version import __version__

__all__ = ["__version__"]
