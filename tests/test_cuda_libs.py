"""CTranslate2 on CUDA without CUDA 12's cuBLAS / cuDNN 9: a clear error naming the fix."""

from __future__ import annotations

import sys

import pytest

from whisper_finetune import cuda_libs


def _loader(loadable: set[str], calls: list[str]):
    """A stand-in for ctypes.CDLL: loads only the names or paths in ``loadable``."""

    def load(name: str):
        calls.append(name)
        if name not in loadable:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return object()

    return load


@pytest.fixture
def linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")


def test_a_cuda13_machine_gets_the_install_line(linux, tmp_path):
    # a CUDA 13 image: cuDNN 9 is there (torch's), CUDA 12's cuBLAS is not
    calls: list[str] = []
    have = {"libcudnn.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9"}
    with pytest.raises(cuda_libs.MissingCudaLibrary) as err:
        cuda_libs.require_ct2_cuda_libraries("cuda", _loader(have, calls), [tmp_path])
    text = str(err.value)
    assert "libcublasLt.so.12, libcublas.so.12 cannot be loaded" in text
    assert "libcudnn" not in text.split("cannot be loaded")[0]
    assert "pip install nvidia-cublas-cu12 'nvidia-cudnn-cu12==9.*'" in text
    assert "LD_LIBRARY_PATH" in text and "--device cpu" in text
    assert set(calls) >= set(cuda_libs.CT2_CUDA_LIBRARIES)


def test_libraries_from_the_pip_packages_are_loaded_by_path(linux, tmp_path):
    # nvidia-cublas-cu12 installed, but not on LD_LIBRARY_PATH: loaded from site-packages
    lib = tmp_path / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    for name in ("libcublas.so.12", "libcublasLt.so.12"):
        (lib / name).write_bytes(b"")
    dirs = cuda_libs.pip_library_dirs([str(tmp_path)])
    assert dirs == [lib]
    calls: list[str] = []
    have = {str(lib / "libcublas.so.12"), str(lib / "libcublasLt.so.12")}
    have |= {"libcudnn.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9"}
    cuda_libs.require_ct2_cuda_libraries("cuda:0", _loader(have, calls), dirs)
    assert str(lib / "libcublas.so.12") in calls


def test_a_library_that_fails_to_load_from_its_package_is_still_reported(linux, tmp_path):
    lib = tmp_path / "nvidia" / "cudnn" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcudnn_cnn.so.9").write_bytes(b"not a library")
    have = {"libcublas.so.12", "libcublasLt.so.12", "libcudnn.so.9", "libcudnn_ops.so.9"}
    missing = cuda_libs.missing_ct2_cuda_libraries(_loader(have, []), [lib])
    assert missing == ["libcudnn_cnn.so.9"]


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_the_cpu_is_never_checked(linux, device):
    calls: list[str] = []
    cuda_libs.require_ct2_cuda_libraries(device, _loader(set(), calls), [])
    assert calls == []


def test_the_real_loader_reports_what_this_machine_lacks(linux):
    # the CPU test machine has no CUDA 12 libraries: the real ctypes path names them
    missing = cuda_libs.missing_ct2_cuda_libraries(search_dirs=[])
    assert set(missing) <= set(cuda_libs.CT2_CUDA_LIBRARIES)
    if missing:
        with pytest.raises(cuda_libs.MissingCudaLibrary, match=missing[0].replace(".", r"\.")):
            cuda_libs.require_ct2_cuda_libraries("cuda", search_dirs=[])


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_the_ct2_transcriber_names_the_fix_before_loading(linux, monkeypatch, tmp_path, device):
    # a GPU is there (auto picks it), its CUDA 12 cuBLAS is not: the error comes before
    # faster-whisper loads anything (the model folder here is empty)
    import ctranslate2

    from whisper_finetune.inference.ct2 import CT2Transcriber

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(
        cuda_libs, "missing_ct2_cuda_libraries", lambda *a, **k: ["libcublas.so.12"]
    )
    with pytest.raises(cuda_libs.MissingCudaLibrary, match="pip install nvidia-cublas-cu12"):
        CT2Transcriber(str(tmp_path), device=device)
