"""Training on the paths real users take (issue 9, items 1-9 and 15), on the tiny model.

Each test fails on the code before its fix: AdaLoRA's regularizer missing from the loss,
evaluation forced into one language and cut at 128 tokens, fp16 checkpoints trained in
fp16, SpecAugment masking padding, NaN importance scores, AdaLoRA's scale, records with
only timed sentences, a useless cache with workers, NaN losses trained on silently.
"""

from __future__ import annotations

import functools
import json
import logging
import math

import numpy as np
import pytest
import torch
from finetune_data import small_config, write_manifest

from whisper_finetune.data.collator import WhisperCollator
from whisper_finetune.data.dataset import LabelBuilder, WhisperDataset, prepare_records
from whisper_finetune.data.manifest import ManifestError, Record, TimedText, read_manifest
from whisper_finetune.training.config import FinetuneConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MIXED = (  # a Mandarin set and an English guard set in one manifest
    ("你好世界", 1.5, "zh"),
    ("hello world", 1.5, "en"),
    ("今天天气很好", 2.0, "zh"),
    ("good morning", 2.0, "en"),
)


_cfg = functools.partial(small_config, per_device_eval_batch_size=4, lora_dropout=0.0, resolve=True)


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import WhisperProcessor

    return WhisperProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return write_manifest(tmp_path_factory.mktemp("mixed"), clips=MIXED, name="mixed.jsonl")


def _batch(processor, manifest, **dataset_kw):
    labels = LabelBuilder(processor.tokenizer, "zh")
    records, _ = prepare_records(read_manifest(manifest), labels)
    dataset = WhisperDataset(records, processor.feature_extractor, labels, **dataset_kw)
    collator = WhisperCollator(processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>"))
    return dataset, collator([dataset[i] for i in range(len(dataset))])


def _trainer(cfg, model, processor, dataset, **kw):
    from whisper_finetune.training.trainer import (
        WhisperTrainer,
        compute_metrics,
        training_arguments,
    )

    return WhisperTrainer(
        model=model,
        args=training_arguments(cfg, has_eval=True, world_size=1),
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=WhisperCollator(model.config.decoder_start_token_id),
        processing_class=processor.feature_extractor,
        compute_metrics=compute_metrics(processor.tokenizer, "cer"),
        language="zh",
        task="transcribe",
        metric="cer",
        **kw,
    )


# ---- item 1: AdaLoRA's orthogonal regularizer --------------------------------------------


def _independent_orth_reg(model, weight: float) -> torch.Tensor:
    norms = []
    for name, p in model.named_parameters():
        if "lora_A" in name:
            norms.append(torch.linalg.matrix_norm(p @ p.T - torch.eye(p.shape[0])))
        elif "lora_B" in name:
            norms.append(torch.linalg.matrix_norm(p.T @ p - torch.eye(p.shape[1])))
    assert norms
    return weight * torch.stack(norms).mean()


def test_adalora_orth_reg_is_added_to_the_training_loss(tiny_model_dir, processor, mixed, tmp_path):
    from whisper_finetune.training.adapters import build_model
    from whisper_finetune.training.losses import adalora_orth_reg

    dataset, batch = _batch(processor, mixed)
    losses = {}
    for weight in (0.0, 0.5):
        cfg = _cfg(
            tiny_model_dir,
            mixed,
            tmp_path / str(weight),
            method="adalora",
            max_steps=10,
            adalora_orth_reg_weight=weight,
        )
        torch.manual_seed(0)
        model = build_model(cfg, str(tiny_model_dir), len(dataset))
        trainer = _trainer(cfg, model, processor, dataset, loss_terms=[adalora_orth_reg])
        model.train()
        with torch.no_grad():
            trained = trainer.compute_loss(model, batch)
            inputs = {k: v for k, v in batch.items() if k not in ("origins", "languages")}
            plain = model(**inputs).loss
            regu = _independent_orth_reg(model, weight)
        assert float(trained) == pytest.approx(float(plain + regu), rel=1e-5)
        losses[weight] = (float(trained), float(regu))
    assert losses[0.5][1] > 1e-3  # the regularizer is not trivially zero here
    assert losses[0.5][0] != pytest.approx(losses[0.0][0], rel=1e-6)


def test_train_wires_the_regularizer_for_adalora_only(tiny_model_dir, mixed, tmp_path):
    from whisper_finetune.training import train

    seen = {}

    class Stop(Exception):
        pass

    import whisper_finetune.training.trainer as trainer_module

    class Spy(trainer_module.WhisperTrainer):
        def __init__(self, *args, **kwargs):
            seen["loss_terms"] = kwargs["loss_terms"]
            raise Stop

    mp = pytest.MonkeyPatch()
    mp.setattr(trainer_module, "WhisperTrainer", Spy)
    try:
        for method in ("adalora", "lora"):
            cfg = _cfg(tiny_model_dir, mixed, tmp_path / method, method=method, max_steps=10)
            with pytest.raises(Stop):
                train.finetune(cfg)
            names = [t.__name__ for t in seen["loss_terms"]]
            assert names == (["adalora_orth_reg"] if method == "adalora" else [])
    finally:
        mp.undo()


# ---- items 2 and 8: per-sample language, generation length from the labels --------------


def test_evaluation_decodes_each_sample_in_its_own_language(
    tiny_model_dir, processor, mixed, tmp_path
):
    from whisper_finetune.training.adapters import build_model
    from whisper_finetune.training.trainer import generation_limit

    dataset, batch = _batch(processor, mixed)
    cfg = _cfg(tiny_model_dir, mixed, tmp_path, test_data=str(mixed))
    assert cfg.generation_max_length is None  # no fixed 128-token cut
    model = build_model(cfg, str(tiny_model_dir), len(dataset))
    calls = []
    original = model.generate

    def spy(*args, **kwargs):
        calls.append(dict(kwargs))
        kwargs["max_length"] = min(kwargs["max_length"], 12)  # keep the random model fast
        return original(*args, **kwargs)

    model.generate = spy
    _trainer(cfg, model, processor, dataset).evaluate()
    assert calls[0]["language"] == ["zh", "en", "zh", "en"]
    assert calls[0]["max_length"] == generation_limit(batch["labels"].shape[-1])


def test_generation_limit_fits_a_packed_window():
    from whisper_finetune.training.trainer import generation_limit

    assert generation_limit(10) == 32
    assert generation_limit(200) == 402  # a packed 28 s window: > 128, all of it kept
    assert generation_limit(447) == 448
    with pytest.raises(ValueError, match="generation_max_length"):
        FinetuneConfig(train_data="t", generation_max_length=500).validate()


# ---- item 3: fp16 checkpoints train with fp32 weights ------------------------------------


def test_fp16_checkpoint_fine_tunes_with_fp32_trainable_weights(tiny_model_dir, mixed, tmp_path):
    import shutil

    from transformers import WhisperForConditionalGeneration

    from whisper_finetune.training.adapters import build_model
    from whisper_finetune.training.train import finetune

    half = tmp_path / "half"
    shutil.copytree(tiny_model_dir, half)
    WhisperForConditionalGeneration.from_pretrained(half).half().save_pretrained(half)
    assert json.loads((half / "config.json").read_text())["dtype"] == "float16"
    for method in ("full", "lora"):
        cfg = _cfg(half, mixed, tmp_path / method, method=method)
        model = build_model(cfg, str(half), 4)
        trainable = {p.dtype for p in model.parameters() if p.requires_grad}
        assert trainable == {torch.float32}, (method, trainable)
    result = finetune(_cfg(half, mixed, tmp_path / "run", method="full", max_steps=1))
    assert math.isfinite(result.train_loss)


# ---- item 4: SpecAugment masks the speech, not the padding --------------------------------


def test_spec_augment_masks_fall_inside_the_speech(tiny_model_dir, processor, mixed, tmp_path):
    from whisper_finetune.training.adapters import load_base_model
    from whisper_finetune.training.train import _load_data

    cfg = _cfg(
        tiny_model_dir,
        mixed,
        tmp_path,
        apply_spec_augment=True,
        mask_time_prob=0.3,
        mask_time_length=10,
    )
    labels = LabelBuilder(processor.tokenizer, "zh")
    train = _load_data(cfg, labels, processor.feature_extractor, is_main=True)["train"]
    batch = WhisperCollator(50258)([train[i] for i in range(len(train))])
    assert "attention_mask" in batch  # the trainer's batches carry it
    model = load_base_model(cfg, str(tiny_model_dir)).train()
    torch.manual_seed(0)
    features = batch["input_features"] + 5.0  # no frame is zero before masking
    masked = model.model._mask_input_features(features, attention_mask=batch["attention_mask"])
    zeroed = (masked == 0).all(dim=1)  # (batch, frames): masked time steps
    frames = batch["attention_mask"].sum(-1)
    assert zeroed.any()
    for row, n in zip(zeroed, frames, strict=True):
        assert not row[int(n) :].any(), "a mask landed on padding"


# ---- item 5: AdaLoRA under fp16 skips importance updates on non-finite gradients ---------


def test_adalora_importance_survives_non_finite_gradients(tiny_model_dir, mixed, tmp_path):
    from transformers import TrainerControl, TrainerState

    from whisper_finetune.training.adapters import build_model
    from whisper_finetune.training.callbacks import AdaLoraCallback

    cfg = _cfg(tiny_model_dir, mixed, tmp_path, method="adalora", max_steps=20)
    model = build_model(cfg, str(tiny_model_dir), 4)
    lora = [p for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
    for p in lora:
        p.grad = torch.full_like(p, 0.01)
    lora[0].grad[0, 0] = float("inf")  # what an fp16 overflow leaves behind
    callback = AdaLoraCallback()
    state = TrainerState(global_step=3)
    callback.on_optimizer_step(None, state, TrainerControl(), model=model)
    allocator = model.base_model.rankallocator
    assert callback.skipped_updates == 1
    assert all(torch.isfinite(v).all() for v in allocator.exp_avg_ipt.values())
    lora[0].grad[0, 0] = 0.01
    callback.on_optimizer_step(None, TrainerState(global_step=4), TrainerControl(), model=model)
    assert allocator.exp_avg_ipt and all(
        torch.isfinite(v).all() for v in allocator.exp_avg_ipt.values()
    )


# ---- item 6: AdaLoRA's own alpha ------------------------------------------------------------


def test_adalora_alpha_defaults_to_twice_its_initial_rank():
    from whisper_finetune.training.adapters import peft_config

    cfg = FinetuneConfig(train_data="t", method="adalora", adalora_init_r=12)
    ada = peft_config(cfg, total_step=100)
    assert ada.lora_alpha == 24 and ada.init_r == 12  # scale 2, as LoRA's 64 / 32
    assert peft_config(FinetuneConfig(train_data="t"), 100).lora_alpha == 64
    assert (
        peft_config(
            FinetuneConfig(train_data="t", method="adalora", adalora_alpha=6), 100
        ).lora_alpha
        == 6
    )
    help_text = FinetuneConfig.__dataclass_fields__["adalora_alpha"].metadata["help"]
    assert "2 * --adalora_init_r" in help_text


# ---- item 7: records with only timed sentences; sentence checks ---------------------------


def test_record_with_only_sentences_trains_on_its_words(processor):
    labels = LabelBuilder(processor.tokenizer, "zh")
    record = Record(
        audio_path="a.wav",
        sentence="",
        sentences=(TimedText(0.0, 1.0, "你好"), TimedText(1.2, 2.0, "世界")),
    )
    ids = labels.build(record, timestamps=False)
    text = processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert text == "你好世界"
    assert not labels.is_no_speech(record)


@pytest.mark.parametrize(
    ("sentences", "match"),
    [
        (((0.0, 1.0), (0.5, 1.5)), "must not overlap"),
        (((1.0, 1.5), (0.0, 0.8)), "must be in order"),
        (((0.0, 1.0), (1.0, 9.0)), "past the end of the clip"),
    ],
)
def test_bad_sentence_timing_is_rejected_with_its_line(processor, tmp_path, sentences, match):
    folder = tmp_path / "clips"
    path = write_manifest(folder, clips=(("你好世界", 1.5, None),), name="one.jsonl")
    record = json.loads(path.read_text(encoding="utf-8"))
    record["sentences"] = [{"start": a, "end": b, "text": "你好"} for a, b in sentences]
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    labels = LabelBuilder(processor.tokenizer, "zh")
    with pytest.raises(ManifestError, match=match) as err:
        prepare_records(read_manifest(path), labels)
    assert "one.jsonl:1" in str(err.value)
    kept, report = prepare_records(read_manifest(path), labels, skip_bad=True)
    assert not kept and report.counts["bad_record"] == 1


# ---- item 9: no private caches in dataloader workers --------------------------------------


def test_feature_cache_only_where_it_can_hit(caplog):
    from whisper_finetune.training.train import cache_features

    cfg = FinetuneConfig(train_data="t")
    assert cache_features(cfg.resolved(False, False), 100, 80) is True  # no workers
    with_workers = FinetuneConfig(train_data="t", num_workers=2, cache_features=True)
    with caplog.at_level(logging.WARNING):
        assert cache_features(with_workers.resolved(False, False), 100, 80) is False
    assert "num_workers" in caplog.text


# ---- item 15: a non-finite loss skips its step, then stops the run ------------------------


def test_non_finite_loss_skips_the_step_and_names_the_samples(
    tiny_model_dir, mixed, tmp_path, monkeypatch, caplog
):
    from transformers import TrainerCallback

    from whisper_finetune.training import losses
    from whisper_finetune.training.callbacks import weight_digest
    from whisper_finetune.training.train import finetune

    calls = {"n": 0}
    real = losses.adalora_orth_reg

    def poisoned(model):  # the second micro-batch's loss is NaN
        calls["n"] += 1
        return real(model) + (float("nan") if calls["n"] == 2 else 0.0)

    monkeypatch.setattr(losses, "adalora_orth_reg", poisoned)
    digests = []

    class Digest(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            digests.append(weight_digest(model)["sha256"])

        def on_step_end(self, args, state, control, model=None, **kw):
            digests.append(weight_digest(model)["sha256"])

    cfg = _cfg(tiny_model_dir, mixed, tmp_path / "a", method="adalora", max_steps=3)
    with caplog.at_level(logging.WARNING):
        result = finetune(cfg, callbacks=[Digest()])
    assert result.global_step == 3 and math.isfinite(result.train_loss)
    assert "skipping this optimizer step" in caplog.text
    assert "mixed.jsonl:" in caplog.text  # the batch's manifest lines
    assert digests[1] != digests[0]  # step 1 trained
    assert digests[2] == digests[1]  # step 2 (NaN) left the weights alone
    assert digests[3] != digests[2]  # step 3 trained again

    calls["n"] = 0
    monkeypatch.setattr(losses, "adalora_orth_reg", lambda m: real(m) + float("nan"))
    cfg = _cfg(
        tiny_model_dir,
        mixed,
        tmp_path / "b",
        method="adalora",
        max_steps=5,
        max_nonfinite_steps=1,
    )
    with pytest.raises(RuntimeError, match="non-finite loss"):
        finetune(cfg)


def test_collator_carries_origins_languages_and_the_frame_mask(processor, mixed):
    _, batch = _batch(processor, mixed, attention_mask=True)
    assert batch["languages"] == ["zh", "en", "zh", "en"]
    assert all(o.startswith(str(mixed)) for o in batch["origins"])
    assert batch["attention_mask"].shape == (4, 3000)
    assert batch["attention_mask"][0].sum() == 150 and batch["attention_mask"][2].sum() == 200
    assert np.array_equal(batch["attention_mask"][0, :150].numpy(), np.ones(150))
