"""The ``--anchor`` terms: each equals its definition computed independently, is zero
while the adapters are a no-op, and a run trains with it and logs it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from finetune_data import CLIPS, small_config, write_manifest
from transformers import TrainerCallback, WhisperForConditionalGeneration

from whisper_finetune.training.anchor import Anchor, delta_penalty, distillation_loss
from whisper_finetune.training.config import FinetuneConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _peft_model(model_dir, method="lora"):
    from peft import AdaLoraConfig, LoraConfig, get_peft_model

    base = WhisperForConditionalGeneration.from_pretrained(model_dir)
    if method == "lora":
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1"])
    else:
        config = AdaLoraConfig(
            init_r=4, target_r=2, lora_alpha=8, target_modules=["q_proj", "v_proj"], total_step=10
        )
    return get_peft_model(base, config)


def _perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_E" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _batch(model):
    torch.manual_seed(0)
    feats = torch.randn(2, model.config.num_mel_bins, 3000)
    labels = torch.tensor(
        [[50258, 50260, 50359, 50363, 220, 50257], [50258, 50260, 50359, 50363, 50257, -100]]
    )
    return {"input_features": feats, "labels": labels}


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_l2_penalty_is_the_mean_squared_weight_change(tiny_model_dir, method):
    model = _peft_model(tiny_model_dir, method)
    if method == "lora":  # B starts at zero: no change yet
        assert float(delta_penalty(model)) == 0.0
    _perturb(model)
    # independently: merge each layer's delta with peft and measure it
    deltas = []
    for module in model.modules():
        if (
            hasattr(module, "get_delta_weight")
            and hasattr(module, "lora_A")
            and "default" in module.lora_A
        ):
            deltas.append(module.get_delta_weight("default").float().pow(2).sum())
    expected = torch.stack(deltas).mean()
    assert len(deltas) > 0
    torch.testing.assert_close(delta_penalty(model), expected, rtol=1e-4, atol=1e-6)


def test_distillation_is_the_kl_to_the_adapter_free_model(tiny_model_dir):
    model = _peft_model(tiny_model_dir)
    model.eval()
    batch = _batch(model)
    out = model(**batch)
    assert float(distillation_loss(model, batch, out.logits)) == pytest.approx(0.0, abs=1e-6)
    _perturb(model)
    out = model(**batch)
    with torch.no_grad(), model.disable_adapter():
        base = model(**batch).logits
    mask = batch["labels"] != -100
    for t in (1.0, 2.0):
        p_base = F.softmax(base[mask] / t, -1)
        expected = (
            (p_base * (F.log_softmax(base[mask] / t, -1) - F.log_softmax(out.logits[mask] / t, -1)))
            .sum(-1)
            .mean()
            * t
            * t
        )
        got = distillation_loss(model, batch, out.logits, temperature=t)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
        assert float(got) > 0
    # gradients reach the adapters, not the frozen base
    distillation_loss(model, batch, model(**batch).logits).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads.values())


def test_anchor_weight_scales_the_term(tiny_model_dir):
    model = _peft_model(tiny_model_dir)
    _perturb(model)
    one = Anchor("l2", 1.0).loss(model, {}, None)
    torch.testing.assert_close(Anchor("l2", 0.25).loss(model, {}, None), 0.25 * one)


def test_anchor_settings_are_checked():
    with pytest.raises(ValueError, match="needs --method=lora or adalora"):
        FinetuneConfig(train_data="a.jsonl", method="full", anchor="kd").validate()
    with pytest.raises(ValueError, match="must be > 0"):
        FinetuneConfig(train_data="a.jsonl", anchor="l2", anchor_weight=0).validate()
    with pytest.raises(ValueError, match="--anchor must be one of"):
        Anchor("ewc", 1.0)


class _Logs(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


@pytest.mark.slow
@pytest.mark.parametrize("anchor", ["kd", "l2"])
def test_a_run_trains_with_the_anchor_and_logs_it(tiny_model_dir, tmp_path, anchor):
    from whisper_finetune.training.train import finetune

    train = write_manifest(tmp_path, clips=CLIPS[:2], name="pair.jsonl")
    logs = _Logs()
    cfg = small_config(
        tiny_model_dir,
        train,
        tmp_path / "run",
        max_steps=3,
        save_steps=3,
        lora_alpha=8,
        anchor=anchor,
        anchor_weight=2.0,
    )
    finetune(cfg, callbacks=[logs])
    steps = [entry for entry in logs.logs if "loss" in entry]
    assert len(steps) == 3 and all("anchor_loss" in entry for entry in steps)
    # the first step starts from the base model: nothing to anchor yet; later steps moved away
    assert steps[0]["anchor_loss"] == pytest.approx(0.0, abs=1e-6)
    assert steps[-1]["anchor_loss"] > 0
