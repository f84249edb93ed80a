"""Reading CTranslate2 ``model.bin`` files that are not whole: named errors, not tracebacks."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from whisper_finetune.cli import main

_CODES = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2}
_CODES |= {np.dtype(np.int32): 3, np.dtype(np.float16): 4}


def _string(value: str) -> bytes:
    raw = value.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_model_bin(path, variables: dict[str, np.ndarray], aliases: dict[str, str], like) -> None:
    """CTranslate2's format 6 layout, as ct2format's docstring gives it (float32 models),
    with the spec revision of the model.bin ``like``."""
    header = _string("WhisperSpec")
    (revision,) = struct.unpack_from("<I", like.read_bytes(), 4 + len(header))
    out = [struct.pack("<I", 6), header, struct.pack("<II", revision, len(variables))]
    for name, array in variables.items():
        out += [_string(name), struct.pack("<B", array.ndim)]
        out += [struct.pack("<" + "I" * array.ndim, *array.shape)]
        raw = np.ascontiguousarray(array).tobytes()
        out += [struct.pack("<BI", _CODES[array.dtype], len(raw)), raw]
    out.append(struct.pack("<I", len(aliases)))
    out += [_string(a) + _string(t) for a, t in aliases.items()]
    path.write_bytes(b"".join(out))


@pytest.fixture(scope="module")
def tiny_ct2(tiny_model_dir, tmp_path_factory):
    from whisper_finetune.models.convert import convert_to_ct2

    out = tmp_path_factory.mktemp("ct2format") / "ct2"
    return convert_to_ct2(tiny_model_dir, out, quantization="float32")


def test_the_writer_here_round_trips_a_converted_model(tiny_ct2, tmp_path):
    """The test's writer gives back the bytes CTranslate2 wrote, so a file it writes
    with one variable left out differs from a real one by that variable only."""
    from whisper_finetune.models.ct2format import read_model_bin

    variables, aliases = read_model_bin(tiny_ct2 / "model.bin")
    _write_model_bin(tmp_path / "model.bin", variables, aliases, tiny_ct2 / "model.bin")
    assert (tmp_path / "model.bin").read_bytes() == (tiny_ct2 / "model.bin").read_bytes()


@pytest.mark.parametrize(
    "missing",
    ["encoder/num_heads", "decoder/layer_1/ffn/linear_0/weight", "encoder/conv2/weight"],
)
def test_a_model_bin_without_a_variable_names_it_and_the_fix(tiny_ct2, tmp_path, capsys, missing):
    """It ended in a bare ``KeyError: 'encoder/num_heads'`` traceback."""
    from whisper_finetune.models.ct2format import CT2FormatError, read_model_bin

    src = tmp_path / "damaged"
    shutil.copytree(tiny_ct2, src)
    variables, aliases = read_model_bin(tiny_ct2 / "model.bin")
    assert missing in variables
    del variables[missing]
    _write_model_bin(src / "model.bin", variables, aliases, tiny_ct2 / "model.bin")

    assert main(["models", "import-ct2", str(src), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{src / 'model.bin'}" in err, err
    assert f"{missing!r}" in err and "whisper-finetune convert" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()

    from whisper_finetune.models.ct2format import ct2_to_transformers

    with pytest.raises(CT2FormatError, match="lacks the variable"):
        ct2_to_transformers(src, tmp_path / "out2")


def test_variables_stored_as_aliases_are_read(tiny_ct2, tiny_model_dir, tmp_path):
    """CTranslate2 stores a variable equal to an earlier one as an alias (the tiny
    model's zero biases, ``encoder/conv1/bias`` among them); the reader took those for
    missing. The import now gives back the transformers weights it was converted from."""
    from safetensors.numpy import load_file

    from whisper_finetune.models.ct2format import ct2_to_transformers, read_model_bin

    variables, aliases = read_model_bin(tiny_ct2 / "model.bin")
    assert "encoder/conv1/bias" in aliases and "encoder/conv1/bias" not in variables
    out = ct2_to_transformers(tiny_ct2, tmp_path / "back")
    ours, source = (
        load_file(out / "model.safetensors"),
        load_file(tiny_model_dir / "model.safetensors"),
    )
    assert ours.keys() == source.keys()
    for name in source:
        assert np.allclose(ours[name], source[name]), name


def test_a_model_bin_without_decoder_layers_is_named(tiny_ct2, tmp_path):
    from whisper_finetune.models.ct2format import (
        CT2FormatError,
        ct2_to_transformers,
        read_model_bin,
    )

    src = tmp_path / "damaged"
    shutil.copytree(tiny_ct2, src)
    variables, aliases = read_model_bin(tiny_ct2 / "model.bin")
    kept = {k: v for k, v in variables.items() if not k.startswith("decoder/layer_")}
    kept_aliases = {k: v for k, v in aliases.items() if not k.startswith("decoder/layer_")}
    _write_model_bin(src / "model.bin", kept, kept_aliases, tiny_ct2 / "model.bin")
    with pytest.raises(CT2FormatError, match=r"no decoder/layer_\* variables") as err:
        ct2_to_transformers(src, tmp_path / "out")
    assert str(src / "model.bin") in str(err.value)
    assert "whisper-finetune convert" in str(err.value)
