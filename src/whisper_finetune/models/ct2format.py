"""Read CTranslate2 Whisper models and rebuild transformers models from them.

The CTranslate2 ``model.bin`` (format version 6, little-endian) is::

    u32 version, str spec_name, u32 revision, u32 n_variables,
    n_variables x (str name, u8 rank, rank x u32 dims, u8 dtype, u32 n_bytes, bytes),
    u32 n_aliases, n_aliases x (str alias, str target)

where a ``str`` is a ``u16`` length (counting a trailing NUL), the UTF-8 bytes and the
NUL. CTranslate2's own ``TransformersConverter`` maps transformers' Whisper onto these
names; :func:`ct2_to_transformers` runs that mapping backwards, so a faster-whisper
folder (the only form in which real Whisper weights reach this offline machine) becomes
a ``WhisperForConditionalGeneration`` folder that ``from_pretrained`` loads and that
fine-tuning can start from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from pathlib import Path

import numpy as np

from whisper_finetune.staging import check_replaceable, staged_dir, write_marker

logger = logging.getLogger(__name__)

# CTranslate2 dtype codes -> numpy dtypes (bfloat16 is read as raw uint16)
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_BFLOAT16 = 5
N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|> in 0.02 s steps


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 Whisper model we can read."""


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_model_bin(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read every variable of a CTranslate2 ``model.bin``.

    Returns:
        ``(variables, aliases)``: arrays by name (scalars as 0-d arrays; weights stored
        as int8 come with their ``*_scale`` arrays) and alias name -> target name.

    Raises:
        CT2FormatError: naming the file when it is truncated or of another version.
    """
    path = Path(path)
    data = memoryview(path.read_bytes())
    off = 0

    def take(fmt: str):
        nonlocal off
        try:
            values = struct.unpack_from(fmt, data, off)
        except struct.error as exc:
            raise CT2FormatError(f"{path}: truncated at byte {off}") from exc
        off += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal off
        (n,) = take("<H")
        value = bytes(data[off : off + n - 1]).decode("utf-8")
        off += n
        return value

    (version,) = take("<I")
    if version != 6:
        raise CT2FormatError(f"{path}: CTranslate2 model format {version}, expected 6")
    spec = string()
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{path}: model spec is {spec!r}, not WhisperSpec")
    take("<I")  # spec revision
    (count,) = take("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        dims = take("<" + "I" * rank)
        (dtype,) = take("<B")
        (n_bytes,) = take("<I")
        if dtype not in _DTYPES or off + n_bytes > len(data):
            raise CT2FormatError(f"{path}: variable {name!r} is corrupt (dtype {dtype})")
        array = np.frombuffer(data[off : off + n_bytes], dtype=_DTYPES[dtype]).reshape(dims)
        variables[name] = _bf16_to_f32(array) if dtype == _BFLOAT16 else array
        off += n_bytes
    (n_aliases,) = take("<I")
    aliases = {}
    for _ in range(n_aliases):
        alias = string()
        aliases[alias] = string()
    return variables, aliases


class _Variables(dict):
    """A ``model.bin``'s variables by name, its aliases resolved.

    CTranslate2 stores a variable equal to an earlier one as an alias of it (a tiny
    model's zero biases, ``decoder/projection/weight``); looking a name up follows the
    alias. A name neither stored nor aliased raises :class:`CT2FormatError` naming the
    file and the variable, not a bare ``KeyError``.
    """

    def __init__(self, variables: dict[str, np.ndarray], aliases: dict[str, str], path: Path):
        super().__init__(variables)
        self.aliases = aliases
        self.path = path

    def __missing__(self, name: str) -> np.ndarray:
        target = self.aliases.get(name)
        if target is not None and dict.__contains__(self, target):
            return dict.__getitem__(self, target)
        raise CT2FormatError(
            f"{self.path}: lacks the variable {name!r} that a Whisper model needs "
            "(an incomplete or damaged file, or not written by CTranslate2's Whisper "
            "converter); re-convert the model from its transformers folder with "
            "`whisper-finetune convert`"
        )

    def __contains__(self, name: object) -> bool:
        if dict.__contains__(self, name):
            return True
        return dict.__contains__(self, self.aliases.get(name))  # type: ignore[arg-type]


def _float(variables: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A weight as float32, dequantizing int8/int16 weights with their scales."""
    value = variables[name]
    if value.dtype in (np.int8, np.int16) and f"{name}_scale" in variables:
        scale = variables[f"{name}_scale"].astype(np.float32)
        return value.astype(np.float32) / scale.reshape(-1, *([1] * (value.ndim - 1)))
    return value.astype(np.float32)


def _count_layers(variables: _Variables, prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    names = [*variables, *(a for a in variables.aliases if a in variables)]
    found = [int(m.group(1)) for k in names if (m := pattern.match(k))]
    if not found:
        raise CT2FormatError(
            f"{variables.path}: no {prefix}/layer_* variables, so not a whole Whisper model; "
            "re-convert the model from its transformers folder with `whisper-finetune convert`"
        )
    return 1 + max(found)


def _state_dict(variables: dict[str, np.ndarray], n_enc: int, n_dec: int) -> dict[str, np.ndarray]:
    """Map CTranslate2 variable names onto WhisperForConditionalGeneration's."""
    sd: dict[str, np.ndarray] = {}

    def linear(src: str, dst: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = _float(variables, f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = _float(variables, f"{src}/bias")

    def norm(src: str, dst: str) -> None:
        sd[f"{dst}.weight"] = _float(variables, f"{src}/gamma")
        sd[f"{dst}.bias"] = _float(variables, f"{src}/beta")

    def fused(src: str, dsts: list[str], biased: list[bool]) -> None:
        # CTranslate2 fuses projections along dim 0; Whisper's k_proj has no bias,
        # so its slice of the fused bias is zero and is dropped here
        weight = _float(variables, f"{src}/weight")
        bias = _float(variables, f"{src}/bias")
        size = weight.shape[0] // len(dsts)
        for i, (dst, has_bias) in enumerate(zip(dsts, biased, strict=True)):
            sd[f"{dst}.weight"] = weight[i * size : (i + 1) * size]
            if has_bias:
                sd[f"{dst}.bias"] = bias[i * size : (i + 1) * size]

    def self_attention(src: str, dst: str) -> None:
        fused(
            f"{src}/linear_0",
            [f"{dst}.q_proj", f"{dst}.k_proj", f"{dst}.v_proj"],
            [True, False, True],
        )
        linear(f"{src}/linear_1", f"{dst}.out_proj")

    def ffn(src: str, dst: str) -> None:
        linear(f"{src}/linear_0", f"{dst}.fc1")
        linear(f"{src}/linear_1", f"{dst}.fc2")
        norm(f"{src}/layer_norm", f"{dst}.final_layer_norm")

    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    for side in ("encoder", "decoder"):
        sd[f"model.{side}.embed_positions.weight"] = _float(
            variables, f"{side}/position_encodings/encodings"
        )
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
    sd["model.decoder.embed_tokens.weight"] = _float(variables, "decoder/embeddings/weight")
    for i in range(n_enc):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        self_attention(f"{src}/self_attention", f"{dst}.self_attn")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        ffn(f"{src}/ffn", dst)
    for i in range(n_dec):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        self_attention(f"{src}/self_attention", f"{dst}.self_attn")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        fused(
            f"{src}/attention/linear_1",
            [f"{dst}.encoder_attn.k_proj", f"{dst}.encoder_attn.v_proj"],
            [False, True],
        )
        linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
        norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
        ffn(f"{src}/ffn", dst)
    return sd


def build_tokenizer(tokenizer_json: str | os.PathLike, vocab_size: int):
    """A ``WhisperTokenizer`` from a faster-whisper ``tokenizer.json``.

    The special tokens are registered as such (so ``decode(..., skip_special_tokens=True)``
    and timestamp offsets work) and the 1501 timestamp tokens ``<|0.00|>``..``<|30.00|>``
    are added when the file lacks them, which timestamp training needs.
    """
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    added = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))["added_tokens"]
    specials = [t["content"] for t in added if t["special"] and t["content"] != "<|endoftext|>"]
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(tokenizer_json), additional_special_tokens=specials
    )
    first_timestamp = tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1
    missing = vocab_size - len(tokenizer)
    if missing > 0 and len(tokenizer) == first_timestamp:
        tokenizer.add_tokens(
            [
                AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False)
                for i in range(min(missing, N_TIMESTAMPS))
            ]
        )
    return tokenizer


def _generation_config(ct2_config: dict, tokenizer, n_dec_layers: int):
    from transformers import GenerationConfig

    tid = tokenizer.convert_tokens_to_ids
    lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in ct2_config.get("lang_ids", [])}
    eot = tid("<|endoftext|>")
    config = GenerationConfig(
        decoder_start_token_id=tid("<|startoftranscript|>"),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        no_timestamps_token_id=tid("<|notimestamps|>"),
        prev_sot_token_id=tid("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=bool(lang_to_id),
        lang_to_id=lang_to_id,
        task_to_id={"transcribe": tid("<|transcribe|>"), "translate": tid("<|translate|>")},
        alignment_heads=[list(h) for h in ct2_config.get("alignment_heads", [])],
    )
    return config


def ct2_to_transformers(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    marker: dict | None = None,
) -> Path:
    """Turn a CTranslate2 Whisper folder into a transformers folder.

    The output holds ``model.safetensors``, ``config.json``, ``generation_config.json``,
    the tokenizer files and ``preprocessor_config.json``. It is written to a temporary
    sibling folder and renamed into place, so an interrupted run never leaves a folder
    that looks complete.

    Args:
        src: folder with ``model.bin``, ``config.json`` and ``tokenizer.json``.
        dst: output folder; must not exist or be empty unless ``overwrite``.
        overwrite: replace a non-empty ``dst`` holding an earlier model of this package
            (never one with other files, nor one containing ``src``).
        marker: more fields for the folder's marker file (the embedded cache's build).

    Returns:
        ``dst`` as a Path.
    """
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    src, dst = Path(src), Path(dst)
    # config.json holds the language ids and suppress lists: without it the model would
    # be taken for an English-only one (issue 27.12)
    for name in ("model.bin", "tokenizer.json", "config.json"):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src} is not a CTranslate2 Whisper folder: {name} is missing")
    check_replaceable(dst, kind="model", sources=(src,), what="DST")
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"{dst} exists and is not empty (pass overwrite to replace it)")
    try:
        ct2_config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CT2FormatError(f"{src / 'config.json'}: not valid JSON: {exc}") from exc
    if not isinstance(ct2_config, dict):
        raise CT2FormatError(f"{src / 'config.json'}: not a JSON object")
    variables = _Variables(*read_model_bin(src / "model.bin"), src / "model.bin")
    n_enc, n_dec = _count_layers(variables, "encoder"), _count_layers(variables, "decoder")
    vocab_size, d_model = variables["decoder/embeddings/weight"].shape
    n_mels = variables["encoder/conv1/weight"].shape[1]
    config = WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        decoder_start_token_id=50258,
        pad_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50257,
        tie_word_embeddings=True,
    )
    tokenizer = build_tokenizer(src / "tokenizer.json", int(vocab_size))
    config.decoder_start_token_id = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    state = {
        k: torch.from_numpy(np.ascontiguousarray(v))
        for k, v in _state_dict(variables, n_enc, n_dec).items()
    }
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise CT2FormatError(
            f"{src}: weights do not fit Whisper: missing {missing}, unexpected {unexpected}"
        )
    model.tie_weights()
    model.generation_config = _generation_config(ct2_config, tokenizer, n_dec)
    # as openai/whisper-*'s own files: config.json carries the real suppress lists (not
    # WhisperConfig's English-only default begin_suppress_tokens=[220, 50256]), and the
    # tokenizer knows its pad token and its 448-token context
    config.begin_suppress_tokens = list(model.generation_config.begin_suppress_tokens)
    config.suppress_tokens = list(model.generation_config.suppress_tokens)
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.model_max_length = config.max_target_positions
    model.eval()

    with staged_dir(dst, replace=overwrite) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        extractor = WhisperFeatureExtractor(feature_size=int(n_mels))
        # transformers 5 writes processor_config.json; faster-whisper and
        # ct2-transformers-converter --copy_files need preprocessor_config.json
        extractor.to_json_file(str(tmp / "preprocessor_config.json"))
        write_marker(
            tmp,
            "model",
            format="transformers",
            source_model=str(src.resolve()),
            **(marker or {}),
        )
    logger.info(
        "wrote transformers Whisper (%d+%d layers, d_model %d) to %s", n_enc, n_dec, d_model, dst
    )
    return dst
