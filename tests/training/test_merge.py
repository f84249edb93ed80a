"""Merging adapters: logits match, scale interpolates, atomic output, CTranslate2 export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from finetune_data import CLIPS, write_manifest

from whisper_finetune.training.adapters import stored_base_name
from whisper_finetune.training.merge import PROVENANCE_FILE, merge_adapter

pytestmark = [
    pytest.mark.slow,
    # peft noise from the reference models built here (merge_adapter silences its own)
    pytest.mark.filterwarnings("ignore:The following rank_pattern keys did not match"),
    pytest.mark.filterwarnings("ignore:Could not find a config file in"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated"),
    pytest.mark.usefixtures("one_torch_thread"),
]
PROMPT = [[50258, 50260, 50359, 50363]]  # SOT <|zh|> <|transcribe|> <|notimestamps|>


def _base(path):
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()


def _logits(model, features):
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=torch.tensor(PROMPT)).logits


@pytest.fixture(scope="module")
def features():
    return torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def lora_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights on every projection."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    )
    model = get_peft_model(_base(tiny_model_dir), config)
    model.peft_config["default"].base_model_name_or_path = stored_base_name(str(tiny_model_dir))
    out = tmp_path_factory.mktemp("adapters") / "lora"
    model.save_pretrained(out)
    return out


def test_merged_logits_equal_the_adapted_model(tiny_model_dir, lora_adapter, features, tmp_path):
    from peft import PeftModel

    from whisper_finetune.cli import main

    out = tmp_path / "merged"
    assert main(["merge", f"--lora_model={lora_adapter}", f"--output_dir={out}"]) == 0
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        PROVENANCE_FILE,
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / PROVENANCE_FILE).read_text())["base_model"] == str(
        Path(tiny_model_dir).resolve()
    )
    adapted = PeftModel.from_pretrained(_base(tiny_model_dir), str(lora_adapter)).eval()
    expected = _logits(adapted, features)
    merged = _base(out)
    assert merged.config.use_cache
    torch.testing.assert_close(_logits(merged, features), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(_logits(_base(tiny_model_dir), features), expected, atol=1e-3)


def test_scale_interpolates_between_base_and_adapted(tiny_model_dir, lora_adapter, tmp_path):
    base = _base(tiny_model_dir).state_dict()
    full = _base(merge_adapter(lora_adapter, tmp_path / "s1")).state_dict()
    zero = _base(merge_adapter(lora_adapter, tmp_path / "s0", scale=0.0)).state_dict()
    half = _base(merge_adapter(lora_adapter, tmp_path / "s05", scale=0.5)).state_dict()
    assert base.keys() == zero.keys() == half.keys()
    for key in base:
        assert torch.equal(zero[key], base[key]), key  # scale 0: exactly the base weights
        torch.testing.assert_close(
            half[key], base[key] + 0.5 * (full[key] - base[key]), rtol=1e-5, atol=1e-6
        )
    changed = [k for k in base if not torch.equal(full[k], base[k])]
    assert any("q_proj" in k for k in changed) and not any("embed" in k for k in changed)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        merge_adapter(lora_adapter, tmp_path / "bad", scale=1.5)


def test_decoder_scale_weighs_the_decoders_adapters_apart(tiny_model_dir, lora_adapter, tmp_path):
    from whisper_finetune.cli import main

    base = _base(tiny_model_dir).state_dict()
    full = _base(merge_adapter(lora_adapter, tmp_path / "s1")).state_dict()
    out = tmp_path / "dec"
    assert (
        main(
            ["merge", f"--lora_model={lora_adapter}", f"--output_dir={out}", "--decoder_scale=0.25"]
        )
        == 0
    )
    mixed = _base(out).state_dict()
    changed = [k for k in base if not torch.equal(full[k], base[k])]
    assert any(k.startswith("model.encoder.") for k in changed)
    assert any(k.startswith("model.decoder.") for k in changed)
    for key in changed:
        weight = (
            0.25 if key.startswith("model.decoder.") else 1.0
        )  # "encoder_attn" is the decoder's
        torch.testing.assert_close(
            mixed[key], base[key] + weight * (full[key] - base[key]), rtol=1e-5, atol=1e-6
        )
    provenance = json.loads((out / PROVENANCE_FILE).read_text())
    assert (provenance["scale"], provenance["decoder_scale"]) == (1.0, 0.25)
    with pytest.raises(ValueError, match=r"--decoder_scale must be in \[0, 1\]"):
        merge_adapter(lora_adapter, tmp_path / "bad", decoder_scale=-0.1)


def test_output_is_atomic_and_never_clobbered(tiny_model_dir, lora_adapter, tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    merge_adapter(lora_adapter, out)
    with pytest.raises(ValueError, match="not empty.*--overwrite"):
        merge_adapter(lora_adapter, out, scale=0.5)
    merge_adapter(lora_adapter, out, scale=0.5, overwrite=True)  # an earlier merge: replaced
    assert json.loads((out / "whisper_finetune.json").read_text())["scale"] == 0.5
    (out / "keep.txt").write_text("precious")
    for overwrite in (False, True):  # anything else in it: never replaced
        with pytest.raises(ValueError, match=r"holds keep\.txt.*nothing was changed"):
            merge_adapter(lora_adapter, out, overwrite=overwrite)
    assert (out / "keep.txt").read_text() == "precious"
    assert (out / "model.safetensors").is_file()

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((lora_adapter / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(Exception):  # noqa: B017 - whatever safetensors raises
        merge_adapter(broken, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert not [
        p for p in tmp_path.iterdir() if ".partial-" in p.name
    ]  # no half-written folder left
    with pytest.raises(ValueError, match="not a LoRA/AdaLoRA adapter.*full model"):
        merge_adapter(tiny_model_dir, tmp_path / "x")
    with pytest.raises(ValueError, match="overwrite the adapter"):
        merge_adapter(lora_adapter, lora_adapter, overwrite=True)


def test_merge_never_replaces_the_folder_holding_its_base_model(lora_adapter, tmp_path):
    """The adapter names its base model; an --output_dir above it would delete it."""
    base = Path(
        json.loads((lora_adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    )
    before = sorted(p.name for p in base.parent.iterdir())
    with pytest.raises(ValueError, match="would delete the input"):
        merge_adapter(lora_adapter, base.parent, overwrite=True)
    assert sorted(p.name for p in base.parent.iterdir()) == before
    assert (base / "model.safetensors").is_file()


def test_adalora_adapter_merges(tiny_model_dir, tmp_path, features):
    from peft import PeftModel

    from whisper_finetune.training.train import FinetuneConfig, finetune

    train = write_manifest(tmp_path / "data", clips=CLIPS[:2])
    cfg = FinetuneConfig(
        base_model=str(tiny_model_dir),
        train_data=str(train),
        output_dir=str(tmp_path / "run"),
        method="adalora",
        max_steps=5,
        save_steps=5,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        warmup_steps=0,
        adalora_init_r=4,
        adalora_target_r=2,
        adalora_tinit=1,
        adalora_tfinal=1,
        adalora_delta_t=1,
        report_to=("none",),
    )
    adapter = finetune(cfg).final_dir
    assert json.loads((adapter / "adapter_config.json").read_text())["rank_pattern"]
    out = merge_adapter(adapter, tmp_path / "merged")
    adapted = PeftModel.from_pretrained(_base(tiny_model_dir), str(adapter)).eval()
    torch.testing.assert_close(
        _logits(_base(out), features), _logits(adapted, features), rtol=1e-4, atol=1e-4
    )
    base = _base(tiny_model_dir).state_dict()
    zero = _base(merge_adapter(adapter, tmp_path / "zero", scale=0.0)).state_dict()
    assert all(torch.equal(zero[k], base[k]) for k in base)


def test_merged_model_converts_to_ctranslate2_and_transcribes(lora_adapter, tmp_path):
    """The converted merge transcribes as the merged transformers model does."""
    pytest.importorskip("ctranslate2")
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions
    from whisper_finetune.models.convert import convert_to_ct2

    merged = merge_adapter(lora_adapter, tmp_path / "merged")
    ct2 = convert_to_ct2(merged, tmp_path / "ct2", quantization="float32")
    for name in ("model.bin", "tokenizer.json", "preprocessor_config.json"):
        assert (ct2 / name).is_file(), name
    wav = write_manifest(tmp_path / "audio", clips=CLIPS[:1]).parent / "clip0.wav"
    options = DecodeOptions.plain(language="zh", without_timestamps=True, max_new_tokens=3)
    texts = {
        backend: load_transcriber(model, backend, device="cpu").transcribe(wav, options)
        for backend, model in (("transformers", merged), ("ct2", ct2))
    }
    assert texts["ct2"].duration == pytest.approx(CLIPS[0][1], abs=0.01)
    assert texts["ct2"].text and texts["ct2"].text == texts["transformers"].text, texts


def test_base_model_name_is_kept_for_embedded_models(tmp_path):
    """An adapter on embedded:whisper-base records that name, and merge resolves it."""
    from peft import LoraConfig, get_peft_model

    from whisper_finetune.models.resolve import resolve_model

    assert stored_base_name("embedded:whisper-base") == "embedded:whisper-base"
    assert stored_base_name("openai/whisper-tiny") == "openai/whisper-tiny"
    model = get_peft_model(
        _base(resolve_model("embedded:whisper-base")),
        LoraConfig(
            r=2, target_modules=r".*decoder\.layers\.0\.self_attn\.q_proj", init_lora_weights=False
        ),
    )
    model.peft_config["default"].base_model_name_or_path = stored_base_name("embedded:whisper-base")
    model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "embedded:whisper-base"
    out = merge_adapter(tmp_path / "adapter", tmp_path / "merged")
    assert json.loads((out / "config.json").read_text())["d_model"] == 512
    assert json.loads((out / PROVENANCE_FILE).read_text())["base_model"] == "embedded:whisper-base"
