"""Load a model for one backend, by name: the one place that knows every backend."""

from __future__ import annotations

import logging
import os

from whisper_finetune.inference.base import BACKENDS, Transcriber
from whisper_finetune.inference.ct2 import CT2Transcriber
from whisper_finetune.inference.hf import HFTranscriber
from whisper_finetune.inference.whispercpp import WhisperCppTranscriber
from whisper_finetune.models.ggml_check import require_extra
from whisper_finetune.models.resolve import resolve_ggml, resolve_model

logger = logging.getLogger(__name__)


def load_transcriber(
    model: str | os.PathLike = "embedded:whisper-base",
    backend: str = "transformers",
    device: str = "auto",
    compute_type: str = "default",
    cpu_threads: int = 0,
    num_workers: int = 1,
    batch_size: int = 1,
    long_audio_batch: int | None = None,
    pad_audio: bool | None = None,
) -> Transcriber:
    """Load a model for one backend.

    Args:
        model: ``embedded:whisper-base``, a transformers or CTranslate2 folder, or a hub
            id (see :func:`whisper_finetune.models.resolve.resolve_model`). A transformers folder
            used with ``ct2`` is converted once (float32) and cached; with ``whispercpp``,
            a whisper.cpp ``ggml-*.bin`` file (or a folder holding one) is used as it is and a
            transformers folder is converted once (GGML f16) and cached.
        backend: ``"transformers"``, ``"ct2"`` or ``"whispercpp"`` (needs
            ``pip install whisper-finetune[whispercpp]``).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        compute_type: see :class:`HFTranscriber` and :class:`CT2Transcriber`; for
            whispercpp, the GGML type a transformers model is converted to (``default``:
            f16; ``q8_0``, ``q5_0``, ...), or the type a given model file must have.
        cpu_threads: CPU threads (0: the library's default). On transformers this sets
            ``torch.set_num_threads`` for the whole process.
        num_workers: ct2 only: parallel workers for multi-threaded callers.
        batch_size: ct2 only: see :class:`CT2Transcriber`. (The transformers backend
            batches whatever :meth:`~Transcriber.transcribe_batch` is given.)
        long_audio_batch: ct2 only: the batch size for one long audio when ``batch_size``
            is 1 (default: batched on a CPU; 1 keeps sequential decoding); see
            :class:`CT2Transcriber`.
        pad_audio: ct2 only: silence padding before the log-mel (True), faster-whisper's
            zero log-mel padding (False), or by compute type (None); see
            :class:`CT2Transcriber`.

    Returns:
        A :class:`Transcriber`.

    Raises:
        ValueError: for an unknown backend or compute type.
        whisper_finetune.models.store.ModelNotFoundError: when the model resolves to nothing.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "whispercpp":
        require_extra("pywhispercpp", "the whisper.cpp backend (--backend=whispercpp)")
        path = resolve_ggml(model, compute_type)
        logger.info("loading whisper.cpp model %s", path)
        return WhisperCppTranscriber(path, device, cpu_threads=cpu_threads)
    path = resolve_model(model, backend)
    logger.info("loading %s model %s on %s", backend, path, device)
    if backend == "ct2":
        return CT2Transcriber(
            path,
            device,
            compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            batch_size=batch_size,
            long_audio_batch=long_audio_batch,
            pad_audio=pad_audio,
        )
    if cpu_threads > 0:
        import torch

        torch.set_num_threads(cpu_threads)
    return HFTranscriber(path, device, compute_type)
