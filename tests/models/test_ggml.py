"""GGML (whisper.cpp) export: the file layout, the values in it, atomic writes, clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from whisper_finetune.models.ggml import GGML_QUANTIZATIONS, convert_to_ggml, ggml_file_name
from whisper_finetune.models.ggml_check import MissingExtraError, read_ggml, verify_ggml


@pytest.fixture(scope="module")
def tiny_cpp_dir(tmp_path_factory) -> Path:
    """The tiny random Whisper with Whisper's 4 x d_model feed-forward (whisper.cpp needs it)."""
    from whisper_finetune.models.tiny import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny4") / "tiny-ffn4", ffn_dim=256)


def _weights(model_dir) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def _tensor(path: Path, info, name: str) -> np.ndarray:
    """A tensor's values read back from the file (dequantized with gguf's reference code)."""
    import gguf

    kind, shape = info.tensors[name]
    raw = path.read_bytes()
    start = info.offsets[name]
    if kind in ("f32", "f16"):
        dtype = np.dtype("<f4" if kind == "f32" else "<f2")
        count = int(np.prod(shape))
        return np.frombuffer(raw, dtype, count, start).reshape(shape).astype(np.float32)
    qtype = gguf.GGMLQuantizationType[kind.upper()]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    nbytes = int(np.prod(shape)) // block * size
    rows = np.frombuffer(raw, np.uint8, nbytes, start).reshape(shape[0], -1)
    return gguf.quants.dequantize(rows, qtype).reshape(shape)


@pytest.mark.parametrize("quantization", ["f16", "q8_0"])
def test_tiny_export_has_whisper_cpp_layout_and_values(tiny_cpp_dir, tmp_path, quantization):
    from transformers import AutoTokenizer, WhisperConfig, WhisperFeatureExtractor

    out = convert_to_ggml(tiny_cpp_dir, tmp_path / "ggml", quantization=quantization)
    assert out == tmp_path / "ggml" / ggml_file_name(quantization)
    assert out.name == ("ggml-model.bin" if quantization == "f16" else "ggml-model-q8_0.bin")
    provenance = json.loads((out.parent / "whisper_finetune.json").read_text())
    assert (provenance["format"], provenance["quantization"]) == ("ggml", quantization)
    info = read_ggml(out)

    config = WhisperConfig.from_pretrained(tiny_cpp_dir)
    assert info.hparams == {
        "n_vocab": 51865,
        "n_audio_ctx": 1500,
        "n_audio_state": 64,
        "n_audio_head": 2,
        "n_audio_layer": 2,
        "n_text_ctx": 448,
        "n_text_state": 64,
        "n_text_head": 2,
        "n_text_layer": 2,
        "n_mels": config.num_mel_bins,
        "ftype": 1 if quantization == "f16" else 2007,  # GGML_QNT_VERSION 2 * 1000 + Q8_0
    }
    # the mel filter bank whisper.cpp computes its features with
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_cpp_dir)
    np.testing.assert_allclose(info.mel_filters, extractor.mel_filters.T, rtol=0, atol=1e-7)
    # byte-level vocabulary: ids below <|endoftext|>, raw bytes (a CJK character is 3 bytes)
    tokenizer = AutoTokenizer.from_pretrained(tiny_cpp_dir)
    assert len(info.tokens) == tokenizer.convert_tokens_to_ids("<|endoftext|>") == 50257
    for text in (" the quick brown fox", "近几年，不但我用书给女儿压岁"):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert b"".join(info.tokens[i] for i in ids) == text.encode("utf-8")

    # 7 encoder tensors outside the blocks + 15 per block; 4 + 24 per decoder block
    assert len(info.tensors) == 7 + 15 * 2 + 4 + 24 * 2
    weight_type = "f16" if quantization == "f16" else "q8_0"
    assert info.tensors["encoder.blocks.0.attn.query.weight"] == (weight_type, (64, 64))
    assert info.tensors["decoder.blocks.1.mlp.0.weight"] == (weight_type, (256, 64))
    assert info.tensors["decoder.token_embedding.weight"] == (weight_type, (51865, 64))
    assert info.tensors["encoder.conv1.weight"] == ("f16", (64, 80, 3))
    assert info.tensors["encoder.conv1.bias"] == ("f32", (64, 1))
    assert info.tensors["encoder.positional_embedding"] == ("f32", (1500, 64))
    assert info.tensors["decoder.blocks.0.cross_attn_ln.bias"] == ("f32", (64,))
    assert "decoder.blocks.0.attn.key.bias" not in info.tensors  # Whisper's k has no bias

    # the values: exact for f32 tensors, f16 rounding, or q8_0's block error
    weights = _weights(tiny_cpp_dir)
    pairs = {
        "encoder.positional_embedding": "model.encoder.embed_positions.weight",
        "encoder.blocks.1.mlp.2.weight": "model.encoder.layers.1.fc2.weight",
        "decoder.blocks.0.cross_attn.key.weight": "model.decoder.layers.0.encoder_attn.k_proj.weight",
        "decoder.token_embedding.weight": "model.decoder.embed_tokens.weight",
        "encoder.conv2.weight": "model.encoder.conv2.weight",
    }
    for name, hf_name in pairs.items():
        got, want = _tensor(out, info, name), weights[hf_name].astype(np.float32)
        kind = info.tensors[name][0]
        scale = np.abs(want).max()
        tolerance = {"f32": 0, "f16": 1e-3 * scale, "q8_0": 1e-2 * scale}[kind]
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance, err_msg=name)


def test_every_quantization_loads_in_whisper_cpp(tiny_cpp_dir, tmp_path):
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions

    for quantization in GGML_QUANTIZATIONS:
        out = convert_to_ggml(tiny_cpp_dir, tmp_path / quantization, quantization=quantization)
        verify_ggml(out)  # read back, then loaded by whisper.cpp
        if quantization == "f32":  # whisper.cpp loads it, but its CPU convolution aborts on it
            with pytest.raises(ValueError, match="whisper.cpp#2557"):
                load_transcriber(out, "whispercpp")
            continue
        transcriber = load_transcriber(out.parent, "whispercpp", cpu_threads=1)
        # one plain pass: robust decoding's VAD gate would (rightly) decode no silence at all
        result = transcriber.transcribe(
            np.zeros(16000, np.float32), DecodeOptions.plain(language="zh", max_new_tokens=4)
        )
        assert result.duration == 1.0 and result.language == "zh" and result.text


def test_writes_are_atomic_and_refuse_a_full_folder(tiny_cpp_dir, tmp_path, monkeypatch):
    import whisper_finetune.models.ggml as ggml

    out = tmp_path / "ggml"
    calls = []

    def broken(data, kind):
        calls.append(kind)
        if len(calls) > 20:
            raise KeyboardInterrupt  # an interrupted run, part way through the tensors
        return real(data, kind)

    real = ggml._encode
    monkeypatch.setattr(ggml, "_encode", broken)
    with pytest.raises(KeyboardInterrupt):
        convert_to_ggml(tiny_cpp_dir, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written left
    monkeypatch.setattr(ggml, "_encode", real)

    convert_to_ggml(tiny_cpp_dir, out)
    with pytest.raises(FileExistsError, match="--force"):
        convert_to_ggml(tiny_cpp_dir, out, quantization="q8_0")
    convert_to_ggml(tiny_cpp_dir, out, quantization="q8_0", force=True)
    assert sorted(p.name for p in out.iterdir()) == ["ggml-model-q8_0.bin", "whisper_finetune.json"]


def test_bad_inputs_give_clear_errors(tiny_model_dir, tiny_cpp_dir, tmp_path):
    with pytest.raises(ValueError, match="4 x d_model"):  # the 2 x d_model test fixture
        convert_to_ggml(tiny_model_dir, tmp_path / "a")
    with pytest.raises(ValueError, match="quantization must be one of"):
        convert_to_ggml(tiny_cpp_dir, tmp_path / "b", quantization="int8")
    out = convert_to_ggml(tiny_cpp_dir, tmp_path / "c")
    cut = tmp_path / "cut.bin"
    cut.write_bytes(out.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated inside tensor"):
        verify_ggml(cut)


def test_a_missing_extra_names_the_pip_install(tiny_cpp_dir, tmp_path, monkeypatch, capsys):
    from whisper_finetune.cli import main
    from whisper_finetune.inference.loader import load_transcriber

    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install whisper-finetune\[whispercpp\]"):
        convert_to_ggml(tiny_cpp_dir, tmp_path / "q", quantization="q5_0")
    assert not (tmp_path / "q").exists()
    convert_to_ggml(tiny_cpp_dir, tmp_path / "f16")  # f16 needs numpy only

    monkeypatch.setitem(sys.modules, "pywhispercpp", None)
    with pytest.raises(MissingExtraError, match=r"pip install whisper-finetune\[whispercpp\]"):
        load_transcriber(tmp_path / "f16", "whispercpp")
    wav = tmp_path / "silence.wav"
    from whisper_finetune.data.audio import write_wav

    write_wav(wav, np.zeros(16000, np.float32))
    argv = ["infer", f"--audio_path={wav}", f"--model_path={tmp_path / 'f16'}"]
    assert main([*argv, "--backend=whispercpp"]) == 1
    assert "pip install whisper-finetune[whispercpp]" in capsys.readouterr().err


def test_convert_sample_fails_on_an_f16_mismatch_and_reports_quantized(
    tiny_cpp_dir, test_wav, tmp_path, monkeypatch, capsys
):
    """A conversion that breaks the model (here: a zeroed token embedding) fails the command."""
    import whisper_finetune.models.ggml as ggml
    from whisper_finetune.cli import main

    real = ggml._encode
    shape = (51865, 64)  # decoder.token_embedding.weight

    def zero_embedding(data, kind):
        return real(np.zeros_like(data) if data.shape == shape else data, kind)

    from whisper_finetune.data.audio import load_audio, write_wav

    sample = write_wav(tmp_path / "sample.wav", load_audio(test_wav)[:32000])  # 2 s: quicker
    monkeypatch.setattr(ggml, "_encode", zero_embedding)
    argv = ["convert", "--format=ggml", f"--model_path={tiny_cpp_dir}", f"--sample={sample}"]
    argv += ["--language=zh", "--device=cpu"]
    assert main([*argv, f"--output_dir={tmp_path / 'f16'}"]) == 1
    captured = capsys.readouterr()
    assert "(DIFFERENT)" in captured.out
    assert "the f16 conversion does not give the source's greedy text" in captured.err
    assert (tmp_path / "f16" / "ggml-model.bin").is_file()  # kept, for inspection

    # a quantized type reports the difference, and fails unless it is accepted
    assert main([*argv, f"--output_dir={tmp_path / 'q8'}", "--quantization=q8_0"]) == 1
    captured = capsys.readouterr()
    assert "CER ggml vs transformers:" in captured.out and "(DIFFERENT)" in captured.out
    q8 = ["--quantization=q8_0", "--accept_difference"]
    assert main([*argv, f"--output_dir={tmp_path / 'q8-accepted'}", *q8]) == 0
    assert "(DIFFERENT)" in capsys.readouterr().out
    # a type of the other format is refused before any work
    assert main([*argv, f"--output_dir={tmp_path / 'x'}", "--quantization=int8"]) == 1
    assert "--format=ggml takes --quantization in" in capsys.readouterr().err


def _tree(root: Path) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("target", ["file", "foreign", "source", "parent"])
def test_ggml_force_never_deletes_what_output_dir_is(tiny_cpp_dir, tmp_path, capsys, target):
    """Issue 27.1: ``convert --format=ggml --force`` follows the folder rule of staging.py."""
    import shutil

    from whisper_finetune.cli import main

    root = tmp_path / "work"
    src = root / "models" / "whisper"
    shutil.copytree(tiny_cpp_dir, src)
    (root / "models" / "other-model.bin").write_bytes(b"weights")
    (root / "notes.txt").write_text("a month of notes")
    (root / "mine").mkdir()
    (root / "mine" / "keep.txt").write_text("mine")
    before = _tree(root)
    out = {
        "file": root / "notes.txt",
        "foreign": root / "mine",
        "source": src,
        "parent": src.parent,
    }[target]
    argv = ["convert", "--format=ggml", f"--model_path={src}", f"--output_dir={out}", "--force"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    expected = {
        "file": "is not a folder",
        "foreign": "holds keep.txt",
        "source": "would delete the input",
        "parent": "would delete the input",
    }[target]
    assert expected in err and str(out) in err
    assert _tree(root) == before  # every file kept, byte for byte
    assert not [p for p in root.rglob(".*")]  # no staging folder left behind


def test_ggml_force_replaces_an_earlier_ggml_output(tiny_cpp_dir, tmp_path):
    out = tmp_path / "ggml"
    convert_to_ggml(tiny_cpp_dir, out, verify=False)
    convert_to_ggml(tiny_cpp_dir, out, quantization="f32", force=True, verify=False)
    assert sorted(p.name for p in out.iterdir()) == ["ggml-model-f32.bin", "whisper_finetune.json"]
