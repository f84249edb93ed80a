"""Reading a whisper.cpp (GGML) model file back, and loading it with whisper.cpp.

:func:`read_ggml` parses the layout :mod:`whisper_finetune.models.ggml` writes (header,
mel filters, vocabulary, tensors) without loading weights; :func:`verify_ggml` checks a
file with it and then with whisper.cpp itself; :func:`load_whisper_cpp` is the one place
that creates a whisper.cpp context. ``pywhispercpp`` and ``gguf`` are optional
(``pip install whisper-finetune[whispercpp]``); :func:`require_extra` names the extra.
"""

from __future__ import annotations

import collections
import logging
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

GGML_MAGIC = 0x67676D6C
EXTRA = "whispercpp"


class MissingExtraError(ImportError, RuntimeError):
    """An optional dependency is not installed (a RuntimeError too, so the CLI reports it plainly)."""


def require_extra(module: str, purpose: str, extra: str = EXTRA):
    """Import ``module`` or fail with the ``pip install`` line that brings it.

    Raises:
        MissingExtraError: naming ``pip install whisper-finetune[extra]``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the optional dependency {module!r}, which is not installed: "
            f"pip install whisper-finetune[{extra}]"
        ) from exc


def find_ggml_file(path: str | os.PathLike) -> Path | None:
    """The whisper.cpp model file a path names: the file itself, or the one ``ggml-*.bin`` in a folder."""
    path = Path(path).expanduser()
    if path.is_file():
        return path if _has_magic(path) else None
    if path.is_dir():
        found = sorted(p for p in path.glob("ggml-*.bin") if _has_magic(p))
        return found[0] if len(found) == 1 else None
    return None


def _has_magic(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and struct.unpack("<I", head)[0] == GGML_MAGIC


@dataclass(frozen=True)
class GGMLInfo:
    """What a whisper.cpp model file holds, read back without loading the weights.

    Attributes:
        hparams: the eleven header values by name (``n_vocab`` ... ``ftype``).
        mel_filters: the filter bank, ``(n_mels, 201)``.
        tokens: the vocabulary's raw bytes, in id order.
        tensors: name -> (type name such as ``f16``/``q8_0``, shape outermost first).
        offsets: name -> where the tensor's data starts in the file, in bytes.
    """

    hparams: dict[str, int]
    mel_filters: np.ndarray
    tokens: list[bytes]
    tensors: dict[str, tuple[str, tuple[int, ...]]]
    offsets: dict[str, int]


_HPARAMS = (
    "n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
    "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels", "ftype",
)  # fmt: skip


def read_ggml_header(path: str | os.PathLike) -> dict[str, int]:
    """The eleven header values of a whisper.cpp model file, by name.

    Raises:
        ValueError: for a file that is not a whisper.cpp model.
    """
    with Path(path).open("rb") as f:
        head = f.read(48)
    if len(head) < 48 or struct.unpack_from("<I", head)[0] != GGML_MAGIC:
        raise ValueError(f"{path} is not a whisper.cpp model file")
    return dict(zip(_HPARAMS, struct.unpack_from("<11i", head, 4), strict=True))


def read_ggml(path: str | os.PathLike) -> GGMLInfo:
    """Parse a whisper.cpp model file and check that it ends right after its last tensor.

    Raises:
        ValueError: for a bad magic number, a truncated file or trailing bytes.
    """
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ValueError(f"{path}: truncated at byte {pos}")
        values = struct.unpack_from(fmt, data, pos)
        pos += size
        return values

    (magic,) = take("<I")
    if magic != GGML_MAGIC:
        raise ValueError(f"{path} is not a whisper.cpp model file (bad magic {magic:#x})")
    hparams = dict(zip(_HPARAMS, take("<11i"), strict=True))
    n_mels, n_fft = take("<2i")
    filters = np.array(take(f"<{n_mels * n_fft}f"), dtype=np.float32).reshape(n_mels, n_fft)
    tokens = []
    for _ in range(take("<i")[0]):
        (length,) = take("<i")
        tokens.append(data[pos : pos + length])
        pos += length
    tensors, offsets = {}, {}
    while pos < len(data):
        ndim, name_len, type_id = take("<3i")
        shape = tuple(reversed(take(f"<{ndim}i")))
        name = data[pos : pos + name_len].decode("utf-8")
        pos += name_len
        kind, nbytes = _type_size(type_id, shape)
        if pos + nbytes > len(data):
            raise ValueError(f"{path}: truncated inside tensor {name}")
        tensors[name] = (kind, shape)
        offsets[name] = pos
        pos += nbytes
    return GGMLInfo(hparams, filters, tokens, tensors, offsets)


def _type_size(type_id: int, shape: tuple[int, ...]) -> tuple[str, int]:
    n = int(np.prod(shape))
    if type_id in (0, 1):
        return ("f32", "f16")[type_id], n * (4, 2)[type_id]
    gguf = require_extra("gguf", "reading a quantized GGML file")
    qtype = gguf.GGMLQuantizationType(type_id)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return qtype.name.lower(), n // block * size


def verify_ggml(path: str | os.PathLike) -> None:
    """Read a model file back, and load it with whisper.cpp when ``pywhispercpp`` is installed.

    Raises:
        ValueError: if the file is malformed or lacks tensors.
        RuntimeError: if whisper.cpp refuses the file or reads other dimensions.
    """
    info = read_ggml(path)
    layers = info.hparams["n_audio_layer"], info.hparams["n_text_layer"]
    # convs, positions, final norms; per block 15 tensors (24 with cross-attention)
    expected = 7 + 15 * layers[0] + 4 + 24 * layers[1]
    if len(info.tensors) != expected:
        raise ValueError(f"{path}: {len(info.tensors)} tensors, whisper.cpp expects {expected}")
    try:
        ctx = load_whisper_cpp(path)
    except MissingExtraError:
        logger.info("pywhispercpp is not installed: skipped loading %s with whisper.cpp", path)
        return
    import _pywhispercpp as pw

    try:
        loaded = (pw.whisper_model_n_vocab(ctx), pw.whisper_model_n_audio_layer(ctx))
        if loaded != (info.hparams["n_vocab"], layers[0]):
            raise RuntimeError(f"whisper.cpp read {path} as vocabulary/layers {loaded}")
    finally:
        pw.whisper_free(ctx)


_cpp_logger = logging.getLogger("whisper_cpp")
_load_lock = threading.Lock()
_recent: collections.deque[str] = collections.deque(maxlen=64)


def _log(level: int, text: str) -> None:
    """whisper.cpp's log lines, into Python logging (ggml levels: 2 info, 3 warn, 4 error)."""
    text = text.rstrip()
    _recent.append(text)
    _cpp_logger.log(logging.WARNING if level in (3, 4) else logging.DEBUG, "%s", text)


def load_whisper_cpp(path: str | os.PathLike, use_gpu: bool = False):
    """A whisper.cpp context for a model file; whisper.cpp's log goes to the ``whisper_cpp`` logger.

    pywhispercpp hands back a context even when whisper.cpp failed to load the file (using
    it then crashes the process), so the log is read to tell.

    Raises:
        MissingExtraError: without ``pywhispercpp``.
        RuntimeError: when whisper.cpp refuses the file, with the reason it logged.
    """
    require_extra("pywhispercpp", "the whisper.cpp backend")
    # ggml's threads wait for work by spinning while OpenMP's wait policy is active; on a busy
    # CPU (more runnable threads than cores) a 2-thread run was 2-3x slower here for it. The
    # bundled OpenMP runtime reads the policy once, when it loads: on this first import.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import _pywhispercpp as pw

    params = pw.whisper_context_default_params()
    params.use_gpu = use_gpu
    with _load_lock:
        pw.whisper_log_set(_log)
        _recent.clear()
        ctx = pw.whisper_init_from_file_with_params(str(path), params)
        lines = list(_recent)
    if ctx is None or any("failed to load model" in line for line in lines):
        reasons = [line for line in lines if line.startswith("whisper_model_load")][-2:]
        raise RuntimeError(f"whisper.cpp could not load {path}: " + " | ".join(reasons))
    return ctx
