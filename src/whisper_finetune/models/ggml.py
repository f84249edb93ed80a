"""Convert a transformers Whisper folder to a whisper.cpp (GGML) model file.

whisper.cpp loads one ``ggml-*.bin`` file laid out as (all little-endian):

1. the magic ``0x67676d6c`` ("ggml") and eleven ``int32`` hyper-parameters: vocabulary
   size, audio context, audio state, audio heads, audio layers, text context, text state,
   text heads, text layers, mel bins, and the file type (``f32``/``f16`` = 0/1; a quantized
   type adds ``GGML_QNT_VERSION * 1000``);
2. the mel filter bank: ``int32 n_mels``, ``int32 n_fft_bins`` (201), then the filters as
   float32, row by row;
3. the byte-level vocabulary: ``int32 count``, then per token ``int32 length`` and its raw
   bytes, ids ``0 .. <|endoftext|> - 1`` (whisper.cpp numbers the special tokens itself);
4. the tensors: ``int32 n_dims, name length, type``, the dimensions innermost first, the
   name, and the data.

Tensor types follow what whisper.cpp allocates: 2-D weight matrices in the model's
type (f32, f16 or a ggml block type), the convolution kernels in f16 (f32 for an f32
model), and everything else (biases, layer norms, positional embeddings, the two
convolution biases reshaped to ``[n, 1]``) in f32. Block quantization uses the ``gguf``
package's numpy reference quantizers (``pip install whisper-finetune[whispercpp]``).

The file is written into a temporary sibling folder and renamed into place, like every
model folder this package writes.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from whisper_finetune.models.ggml_check import (
    GGML_MAGIC,
    require_extra,
    verify_ggml,
)
from whisper_finetune.staging import check_replaceable, staged_dir

logger = logging.getLogger(__name__)

GGML_QUANTIZATIONS = ("f32", "f16", "q8_0", "q5_0", "q5_1", "q4_0")
QNT_VERSION = 2  # ggml's GGML_QNT_VERSION: the current block formats
QNT_VERSION_FACTOR = 1000
PROVENANCE_FILE = "whisper_finetune.json"

# transformers names (after "model.") -> whisper.cpp names, outside the layer blocks
_TOP_NAMES = {
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "encoder.layer_norm.weight": "encoder.ln_post.weight",
    "encoder.layer_norm.bias": "encoder.ln_post.bias",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
    "decoder.layer_norm.weight": "decoder.ln.weight",
    "decoder.layer_norm.bias": "decoder.ln.bias",
}
# inside a layer block
_BLOCK_NAMES = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
}
# never quantized, always f32 (whisper.cpp allocates them so)
_F32_ALWAYS = {
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
}


def ggml_file_name(quantization: str) -> str:
    """``ggml-model.bin`` for f16 (whisper.cpp's usual type), else ``ggml-model-<type>.bin``."""
    return "ggml-model.bin" if quantization == "f16" else f"ggml-model-{quantization}.bin"


def ggml_name(hf_name: str) -> str | None:
    """The whisper.cpp tensor name of a transformers one; None for ``proj_out`` (tied)."""
    if hf_name.startswith("proj_out."):
        return None
    name = hf_name.removeprefix("model.")
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    parts = name.split(".")
    if len(parts) >= 5 and parts[1] == "layers":
        stack, _, index, *inner, leaf = parts
        return f"{stack}.blocks.{index}.{_BLOCK_NAMES['.'.join(inner)]}.{leaf}"
    if parts[0] == "encoder" and parts[1] in ("conv1", "conv2"):
        return name
    raise ValueError(f"no whisper.cpp name for tensor {hf_name!r}")


def _tensor_type(name: str, ndim: int, quantization: str) -> str:
    """``f32``, ``f16`` or the block type a tensor is stored in."""
    if quantization == "f32" or ndim < 2 or name in _F32_ALWAYS:
        return "f32"
    if ndim == 3:  # convolution kernels: f16 in every non-f32 model
        return "f16"
    return quantization


def file_type_number(quantization: str) -> int:
    """ggml's ``ggml_ftype`` number of a type name (``f16`` -> 1, ``q8_0`` -> 7, ...)."""
    if quantization not in GGML_QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {GGML_QUANTIZATIONS}, got {quantization!r}")
    if quantization in ("f32", "f16"):
        return GGML_QUANTIZATIONS.index(quantization)
    gguf = require_extra("gguf", f"GGML {quantization} quantization")
    # gguf's LlamaFileType numbers these types as ggml's ggml_ftype does
    return int(gguf.LlamaFileType[f"MOSTLY_{quantization.upper()}"])


def _file_type(quantization: str) -> int:
    """The header's file type: ``ggml_ftype``, plus the block-format version when quantized."""
    number = file_type_number(quantization)
    return number if quantization in ("f32", "f16") else QNT_VERSION * QNT_VERSION_FACTOR + number


def _encode(data: np.ndarray, kind: str) -> tuple[int, bytes]:
    """(ggml type id, raw bytes) of one tensor in the given type."""
    if kind == "f32":
        return 0, np.ascontiguousarray(data, dtype="<f4").tobytes()
    if kind == "f16":
        return 1, np.ascontiguousarray(data, dtype="<f2").tobytes()
    import gguf  # imported (and checked) by _file_type already

    qtype = gguf.GGMLQuantizationType[kind.upper()]
    rows = data.reshape(-1, data.shape[-1]).astype(np.float32)
    return int(qtype), gguf.quants.quantize(rows, qtype).tobytes()


def _vocabulary(src: Path) -> list[bytes]:
    """The raw bytes of tokens ``0 .. <|endoftext|> - 1``, in id order."""
    from transformers import AutoTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokenizer = AutoTokenizer.from_pretrained(src)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    by_id = {i: t for t, i in tokenizer.get_vocab().items() if i < eot}
    if len(by_id) != eot:
        raise ValueError(f"{src}: the vocabulary below <|endoftext|> ({eot}) has gaps")
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    return [bytes(byte_of[c] for c in by_id[i]) for i in range(eot)]


def _mel_filters(src: Path, n_mels: int) -> np.ndarray:
    """Whisper's mel filter bank, ``(n_mels, 201)`` float32, as the feature extractor builds it."""
    from transformers import WhisperFeatureExtractor

    try:
        extractor = WhisperFeatureExtractor.from_pretrained(src)
    except (OSError, ValueError, TypeError):
        extractor = WhisperFeatureExtractor(feature_size=n_mels)
    filters = np.asarray(extractor.mel_filters, dtype=np.float32).T
    if filters.shape[0] != n_mels:
        raise ValueError(f"{src}: {filters.shape[0]} mel filters for a model of {n_mels} mel bins")
    return np.ascontiguousarray(filters)


def write_ggml(src: Path, out: BinaryIO, quantization: str) -> dict[str, int]:
    """Write a transformers Whisper folder as one whisper.cpp model file.

    Returns:
        How many tensors went into each type, e.g. ``{"f32": 120, "q8_0": 100, "f16": 2}``.
    """
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig.from_pretrained(src)
    ffn = (config.encoder_ffn_dim, config.decoder_ffn_dim)
    if ffn != (4 * config.d_model,) * 2:
        raise ValueError(
            f"{src}: feed-forward sizes {ffn} for d_model {config.d_model}; whisper.cpp "
            f"supports only Whisper's 4 x d_model ({4 * config.d_model})"
        )
    ftype = _file_type(quantization)
    hparams = (
        config.vocab_size,
        config.max_source_positions,
        config.d_model,
        config.encoder_attention_heads,
        config.encoder_layers,
        config.max_target_positions,
        config.d_model,
        config.decoder_attention_heads,
        config.decoder_layers,
        config.num_mel_bins,
        ftype,
    )
    out.write(struct.pack("<I11i", GGML_MAGIC, *hparams))
    filters = _mel_filters(src, config.num_mel_bins)
    out.write(struct.pack("<2i", *filters.shape))
    out.write(filters.astype("<f4").tobytes())
    tokens = _vocabulary(src)
    out.write(struct.pack("<i", len(tokens)))
    for token in tokens:
        out.write(struct.pack("<i", len(token)) + token)

    model = WhisperForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    counts: dict[str, int] = {}
    for hf_name, tensor in model.state_dict().items():
        name = ggml_name(hf_name)
        if name is None:
            continue
        data = tensor.detach().cpu().numpy()
        if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
            data = data.reshape(-1, 1)
        kind = _tensor_type(name, data.ndim, quantization)
        if kind not in ("f32", "f16") and data.shape[-1] % 32:
            # ggml blocks hold 32 values of one row; whisper.cpp allocates these in the block type
            raise ValueError(
                f"{hf_name}: rows of {data.shape[-1]} values do not split into 32-value blocks"
            )
        type_id, raw = _encode(data, kind)
        encoded = name.encode("utf-8")
        out.write(struct.pack("<3i", data.ndim, len(encoded), type_id))
        out.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
        out.write(encoded)
        out.write(raw)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def convert_to_ggml(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    quantization: str = "f16",
    force: bool = False,
    verify: bool = True,
) -> Path:
    """Convert a transformers Whisper model to a whisper.cpp model file in ``output_dir``.

    Args:
        model_dir: a transformers Whisper folder (a merged fine-tune, a local folder), or
            ``embedded:whisper-base``.
        output_dir: the folder to write ``ggml-model[-<type>].bin`` (and a provenance
            ``whisper_finetune.json``) into; must not exist or be empty unless ``force``.
        quantization: one of :data:`GGML_QUANTIZATIONS`. ``f16`` is whisper.cpp's usual
            type; ``q8_0`` is near-lossless at half the size; ``q5_*``/``q4_0`` are smaller.
        force: replace a non-empty ``output_dir``.
        verify: load the written file with whisper.cpp (when ``pywhispercpp`` is
            installed) before publishing it.

    Returns:
        The path of the model file inside ``output_dir``.

    Raises:
        ValueError: for an unknown quantization.
        FileExistsError: if ``output_dir`` is not empty and ``force`` is false.
        UnsafeOutputError: if ``output_dir`` is (or holds) the source, is a file, or
            holds anything but an earlier conversion (``force`` or not).
        FileNotFoundError: if the source is not a local transformers Whisper folder.
        MissingExtraError: for a quantized type without the ``gguf`` package.
    """
    from whisper_finetune.models.hub import resolve_transformers
    from whisper_finetune.models.store import is_transformers_dir

    if quantization not in GGML_QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {GGML_QUANTIZATIONS}, got {quantization!r}")
    _file_type(quantization)  # a missing gguf fails here, before any work
    source = str(model_dir)
    src = Path(resolve_transformers(source))
    if not is_transformers_dir(src):
        raise FileNotFoundError(f"{source} is not a local transformers Whisper folder")
    dst = Path(output_dir).expanduser()
    # the folder rule (staging.py): never the input, never anything but an earlier output
    check_replaceable(dst, kind="model", sources=(src, source), what="--output_dir")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not force:
        raise FileExistsError(f"{dst} exists and is not empty (use --force to replace it)")
    name = ggml_file_name(quantization)
    with staged_dir(dst) as built:
        logger.info("converting %s to whisper.cpp GGML (%s)", src, quantization)
        with (built / name).open("wb") as f:
            counts = write_ggml(src, f, quantization)
        provenance = {
            "format": "ggml",
            "file": name,
            "source_model": source,
            "quantization": quantization,
            "tensor_types": counts,
            # GGML has no field for them: whisper.cpp takes the language per call and the
            # alignment heads as the context parameter dtw_aheads
            **_facts(src),
            "whisper_finetune_version": _version(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (built / PROVENANCE_FILE).write_text(
            json.dumps(provenance, indent=2) + "\n", encoding="utf-8"
        )
        if verify:
            verify_ggml(built / name)
    logger.info("wrote whisper.cpp model (%s) to %s", quantization, dst / name)
    return dst / name


def _version() -> str:
    from whisper_finetune.version import __version__

    return __version__


def _facts(src: Path) -> dict:
    from whisper_finetune.models.modelcard import read_facts

    return read_facts(src).to_json()
