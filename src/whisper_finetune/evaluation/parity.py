"""Does a converted model still say what its source says? One sample, both models.

This sits above both conversion (``models``) and inference: it loads each model with
its own backend (transformers for the source; ``ct2`` or ``whispercpp`` for the
conversion) and scores one transcript against the other.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

from whisper_finetune.data.audio import load_audio
from whisper_finetune.evaluation.metrics import score
from whisper_finetune.inference.loader import load_transcriber
from whisper_finetune.inference.transcript import DecodeOptions
from whisper_finetune.text import normalize_text

# weight types that must reproduce the source's greedy text exactly (CTranslate2 runs
# float16 as float32 on a CPU; whisper-base's weights are float16 to begin with)
EXACT_TYPES = ("float32", "float16", "f32", "f16")


@dataclass(frozen=True)
class Agreement:
    """How a converted model's transcript compares with its source's on one sample.

    Attributes:
        sample: the audio file transcribed.
        transformers_text: the source model's transcript.
        converted_text: the converted model's transcript.
        cer: character error rate of the converted text against the transformers text,
            after the scoring normalization (punctuation removed, simplified Chinese).
        backend: the backend that ran the conversion (``ct2`` or ``whispercpp``).
    """

    sample: str
    transformers_text: str
    converted_text: str
    cer: float
    backend: str = "ct2"

    @property
    def identical(self) -> bool:
        """True when both transcripts are exactly the same text."""
        return self.transformers_text == self.converted_text

    @property
    def ct2_text(self) -> str:
        """The converted text (the name from when CTranslate2 was the only conversion)."""
        return self.converted_text


def compare_conversion(
    transformers_model: str | os.PathLike,
    converted_model: str | os.PathLike,
    sample: str | os.PathLike,
    options=None,
    device: str = "auto",
    backend: str = "ct2",
) -> Agreement:
    """Transcribe one sample with a source model and its conversion, and compare.

    Both decode greedily with the same :class:`~whisper_finetune.inference.transcript.DecodeOptions`
    (default: language detected, timestamps on, no fallback). Only one model is loaded
    at a time.

    Args:
        transformers_model: the source (transformers folder or ``embedded:...``).
        converted_model: the converted model: a CTranslate2 folder, or a whisper.cpp
            model file (or the folder holding it).
        sample: an audio file.
        options: decoding options (default ``DecodeOptions.plain()``: one greedy pass,
            so that sampling in a temperature fallback cannot make two equal models differ).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        backend: the converted model's backend, ``"ct2"`` or ``"whispercpp"``.

    Returns:
        An :class:`Agreement` with both texts and the CER between them.
    """
    options = options or DecodeOptions.plain()
    samples = load_audio(sample)
    texts = []
    for model, name in ((transformers_model, "transformers"), (converted_model, backend)):
        # like for like: CTranslate2 gets transformers' log-mel (silence padding) on every
        # compute type, so that only the conversion can make the texts differ
        extra = {"pad_audio": True} if name == "ct2" else {}
        transcriber = load_transcriber(model, name, device=device, **extra)
        texts.append(transcriber.transcribe(samples, options).text)
        del transcriber
        gc.collect()
    cer = score(normalize_text(texts[0]), normalize_text(texts[1]), "cer")
    return Agreement(str(sample), texts[0], texts[1], cer, backend)
