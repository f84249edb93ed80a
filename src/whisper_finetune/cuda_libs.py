"""The CUDA libraries CTranslate2 needs on a GPU: found, or a clear error naming the fix.

The ctranslate2 wheels on PyPI (4.5 and later) are built against CUDA 12's cuBLAS and
cuDNN 9 and load them at run time by name (``libcublas.so.12``, ``libcudnn.so.9``). A
machine whose CUDA is 13 (a CUDA 13 image, or torch built for CUDA 13 with its own
``libcublas.so.13``) has neither, and CTranslate2 then fails late: ``RuntimeError:
Library libcublas.so.12 is not found or cannot be loaded`` at the first encode, or, for
cuDNN, ``Unable to load any of {libcudnn_ops.so.9...}`` and an aborted process.

The fix faster-whisper's README documents: the CUDA 12 libraries from PyPI,
``pip install nvidia-cublas-cu12 'nvidia-cudnn-cu12==9.*'``, found through
``LD_LIBRARY_PATH``. :func:`require_ct2_cuda_libraries` does the second half itself:
libraries that the loader cannot find by name are loaded from those packages' folders
(``site-packages/nvidia/*/lib``) by full path, after which CTranslate2's own ``dlopen`` by
name finds them already loaded. What is still missing is a :class:`MissingCudaLibrary`
naming the libraries and the install line.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

# what a CTranslate2 Whisper model needs on CUDA: cuBLAS (and its Lt half) for the matrix
# products, cuDNN's core plus the ops and convolution parts for the encoder's conv1d stem
CT2_CUDA_LIBRARIES = (
    "libcublasLt.so.12",
    "libcublas.so.12",
    "libcudnn.so.9",
    "libcudnn_ops.so.9",
    "libcudnn_cnn.so.9",
)
PIP_INSTALL = "pip install nvidia-cublas-cu12 'nvidia-cudnn-cu12==9.*'"
LD_LIBRARY_PATH_HINT = (
    "export LD_LIBRARY_PATH=$(python -c 'import os, nvidia.cublas.lib, nvidia.cudnn.lib; "
    'print(os.path.dirname(nvidia.cublas.lib.__file__) + ":" + '
    "os.path.dirname(nvidia.cudnn.lib.__file__))')"
)


class MissingCudaLibrary(RuntimeError):
    """CTranslate2 cannot run on CUDA here: a CUDA 12 / cuDNN 9 library is missing."""


def _load(loader: Callable[[str], object], name: str) -> bool:
    try:
        loader(name)
    except OSError:
        return False
    return True


def pip_library_dirs(paths: Iterable[str] | None = None) -> list[Path]:
    """The ``nvidia/<part>/lib`` folders that NVIDIA's PyPI packages installed."""
    found = []
    for entry in sys.path if paths is None else paths:
        root = Path(entry or ".") / "nvidia"
        if root.is_dir():
            found.extend(sorted(p for p in root.glob("*/lib") if p.is_dir()))
    return found


def missing_ct2_cuda_libraries(
    loader: Callable[[str], object] | None = None,
    search_dirs: Iterable[Path] | None = None,
) -> list[str]:
    """The libraries of :data:`CT2_CUDA_LIBRARIES` that cannot be loaded, after trying
    each missing one from the NVIDIA PyPI packages' folders by full path."""
    if loader is None:

        def loader(name: str) -> object:
            return ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)

    dirs = pip_library_dirs() if search_dirs is None else list(search_dirs)
    missing = []
    for name in CT2_CUDA_LIBRARIES:
        if _load(loader, name):
            continue
        candidates = [d / name for d in dirs if (d / name).is_file()]
        if any(_load(loader, str(path)) for path in candidates):
            logger.info("loaded %s from %s", name, candidates[0].parent)
            continue
        missing.append(name)
    return missing


def on_cuda(device: str) -> bool:
    """Whether a CTranslate2 ``device`` string names a GPU (``cuda``, ``cuda:1``)."""
    return str(device).split(":")[0] == "cuda"


def require_ct2_cuda_libraries(
    device: str = "cuda",
    loader: Callable[[str], object] | None = None,
    search_dirs: Iterable[Path] | None = None,
) -> None:
    """Before a CTranslate2 model loads on ``device``: make sure the CUDA 12 cuBLAS and
    cuDNN 9 it needs can be loaded, or raise :class:`MissingCudaLibrary` naming the fix.
    Does nothing for the CPU, nor off Linux (where the libraries have other names)."""
    if not on_cuda(device) or not sys.platform.startswith("linux"):
        return
    missing = missing_ct2_cuda_libraries(loader, search_dirs)
    if missing:
        raise MissingCudaLibrary(
            f"CTranslate2 on {device} needs CUDA 12's cuBLAS and cuDNN 9 (its wheels are "
            f"built against them), and {', '.join(missing)} cannot be loaded; a CUDA 13 "
            "machine does not have them. Install them from PyPI:\n"
            f"    {PIP_INSTALL}\n"
            "whisper-finetune then finds them in site-packages; for other programs, also\n"
            f"    {LD_LIBRARY_PATH_HINT}\n"
            "Or run CTranslate2 on the CPU (--device cpu), or use the transformers backend."
        )
