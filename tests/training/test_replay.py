"""Replay (``--replay_data``/``--replay_ratio``): replay clips in every training batch, and
``--anchor_rows=replay`` distilling on those rows only."""

from __future__ import annotations

import pytest
import torch
from finetune_data import CLIPS, small_config, write_manifest
from transformers import TrainerCallback

from whisper_finetune.data.collator import WhisperCollator
from whisper_finetune.training.anchor import Anchor, distillation_loss
from whisper_finetune.training.config import FinetuneConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sample(label: int, n_mels: int = 4):
    return {
        "input_features": torch.full((n_mels, 10), float(label)).numpy(),
        "labels": [50258, label, 50257],
    }


def test_every_batch_gets_replay_rows_and_marks_them():
    replay = [_sample(1000 + i) for i in range(5)]
    collate = WhisperCollator(50258, replay=replay, replay_per_batch=2, seed=3)
    again = WhisperCollator(50258, replay=replay, replay_per_batch=2, seed=3)
    for _ in range(3):
        batch = collate([_sample(1), _sample(2), _sample(3)])
        assert batch["input_features"].shape[0] == 5
        assert batch["replay_rows"].tolist() == [False, False, False, True, True]
        assert batch["labels"][:3, 0].tolist() == [1, 2, 3]  # the batch's own samples first
        assert all(int(x) >= 1000 for x in batch["labels"][3:, 0])  # then replay samples
        assert torch.equal(batch["labels"], again([_sample(1), _sample(2), _sample(3)])["labels"])
    plain = WhisperCollator(50258)([_sample(1)])
    assert "replay_rows" not in plain and plain["input_features"].shape[0] == 1
    with pytest.raises(ValueError, match="replay_per_batch >= 1"):
        WhisperCollator(50258, replay=replay, replay_per_batch=0)


def _peft_model(model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration

    model = get_peft_model(
        WhisperForConditionalGeneration.from_pretrained(model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1"]),
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def test_kd_on_replay_rows_is_kd_of_those_rows_alone(tiny_model_dir):
    model = _peft_model(tiny_model_dir)
    torch.manual_seed(0)
    batch = {
        "input_features": torch.randn(3, model.config.num_mel_bins, 3000),
        "labels": torch.tensor(
            [[50258, 50260, 220, 3000, 4000, 50257]] + [[50258, 50260, 220, 50257, -100, -100]] * 2
        ),
    }
    batch["input_features"][0] *= 5
    out = model(**batch)
    rows = torch.tensor([False, True, True])
    got = Anchor("kd", 2.0, rows="replay").loss(model, batch, out, rows)
    alone = {k: v[1:] for k, v in batch.items()}
    expected = 2.0 * distillation_loss(model, alone, model(**alone).logits)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    everything = Anchor("kd", 2.0).loss(model, batch, out, rows)
    assert float(everything.detach()) != pytest.approx(
        float(got.detach()), rel=1e-3
    )  # row 0 counts there
    none = Anchor("kd", 2.0, rows="replay").loss(
        model, batch, out, torch.zeros(3, dtype=torch.bool)
    )
    assert float(none) == 0.0
    with pytest.raises(ValueError, match="no replay rows"):
        Anchor("kd", 1.0, rows="replay").loss(model, batch, out, None)


def test_replay_settings_are_checked():
    with pytest.raises(ValueError, match="needs --anchor=kd and --replay_data"):
        FinetuneConfig(train_data="a.jsonl", anchor="kd", anchor_rows="replay").validate()
    with pytest.raises(ValueError, match="--replay_ratio"):
        FinetuneConfig(train_data="a.jsonl", replay_data="r.jsonl", replay_ratio=0).validate()
    with pytest.raises(ValueError, match="needs --anchor=kd"):
        Anchor("l2", 1.0, rows="replay")


class _Batches(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_a_run_mixes_replay_into_training_and_distils_on_it(tiny_model_dir, tmp_path):
    from whisper_finetune.training.train import finetune, replay_per_batch

    train = write_manifest(tmp_path / "train", clips=CLIPS[:2], name="train.jsonl")
    replay = write_manifest(tmp_path / "replay", clips=CLIPS[5:6], name="replay.jsonl")
    seen = []
    real_call = WhisperCollator.__call__

    def spy(self, samples):
        batch = real_call(self, samples)
        seen.append(int(batch["replay_rows"].sum()) if "replay_rows" in batch else 0)
        return batch

    logs = _Batches()
    cfg = small_config(
        tiny_model_dir,
        train,
        tmp_path / "run",
        test_data=str(train),
        eval_steps=2,
        lora_alpha=8,
        replay_data=str(replay),
        replay_ratio=0.5,
        anchor="kd",
        anchor_rows="replay",
        max_eval_samples=1,
    )
    assert replay_per_batch(cfg) == 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WhisperCollator, "__call__", spy)
        finetune(cfg, callbacks=[logs])
    assert seen.count(1) >= 2  # every training batch had one replay clip
    assert 0 in seen  # the evaluation's batch had none
    steps = [e for e in logs.logs if "loss" in e]
    assert len(steps) == 2 and all("anchor_loss" in e for e in steps)
    assert steps[-1]["anchor_loss"] > 0  # after one step the adapters moved off the base
