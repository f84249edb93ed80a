"""Does a converted model still say what its source says? One sample, both models.

This sits above both conversion (``models``) and inference: it loads each model with
its own backend and scores one transcript against the other.
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


@dataclass(frozen=True)
class Agreement:
    """How a converted model's transcript compares with its source's on one sample.

    Attributes:
        sample: the audio file transcribed.
        transformers_text: the source model's transcript.
        ct2_text: the converted model's transcript.
        cer: character error rate of the ct2 text against the transformers text, after
            the scoring normalization (punctuation removed, simplified Chinese).
    """

    sample: str
    transformers_text: str
    ct2_text: str
    cer: float

    @property
    def identical(self) -> bool:
        """True when both transcripts are exactly the same text."""
        return self.transformers_text == self.ct2_text


def compare_conversion(
    transformers_model: str | os.PathLike,
    ct2_model: str | os.PathLike,
    sample: str | os.PathLike,
    options=None,
    device: str = "auto",
) -> Agreement:
    """Transcribe one sample with a source model and its conversion, and compare.

    Both decode greedily with the same :class:`~whisper_finetune.inference.transcript.DecodeOptions`
    (default: language detected, timestamps on, no fallback). Only one model is loaded
    at a time.

    Args:
        transformers_model: the source (transformers folder or ``embedded:...``).
        ct2_model: the converted CTranslate2 folder.
        sample: an audio file.
        options: decoding options (default ``DecodeOptions.plain()``: one greedy pass,
            so that sampling in a temperature fallback cannot make two equal models differ).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        An :class:`Agreement` with both texts and the CER between them.
    """
    options = options or DecodeOptions.plain()
    samples = load_audio(sample)
    texts = []
    for model, backend in ((transformers_model, "transformers"), (ct2_model, "ct2")):
        transcriber = load_transcriber(model, backend, device=device)
        texts.append(transcriber.transcribe(samples, options).text)
        del transcriber
        gc.collect()
    cer = score(normalize_text(texts[0]), normalize_text(texts[1]), "cer")
    return Agreement(str(sample), texts[0], texts[1], cer)
