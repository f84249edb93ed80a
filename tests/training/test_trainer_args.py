"""The TrainingArguments we pass exist in every transformers that pyproject.toml admits.

transformers 5.25 renamed ``gradient_checkpointing`` to ``activation_checkpointing``; on
5.17 passing the new name crashed every run before its first step. These tests build the
arguments against stand-in signatures of older releases, so a kwarg that only the
installed release knows fails here, not on a user's GPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from transformers import Seq2SeqTrainingArguments

from whisper_finetune.training import trainer
from whisper_finetune.training.config import FinetuneConfig


def _stand_in(drop: set[str]):
    """A dataclass with the installed Seq2SeqTrainingArguments' fields less ``drop``:
    the signature of a release that lacks them. It records what it was given."""
    names = [f.name for f in dataclasses.fields(Seq2SeqTrainingArguments) if f.init]
    return dataclasses.make_dataclass(
        "OldSeq2SeqTrainingArguments",
        [(n, Any, dataclasses.field(default=None)) for n in names if n not in drop],
    )


def _cfg(tmp_path, **kw) -> FinetuneConfig:
    return FinetuneConfig(train_data="t.jsonl", output_dir=str(tmp_path), device="cpu", **kw)


@pytest.mark.parametrize("checkpointing", [True, False])
def test_releases_before_activation_checkpointing_get_the_old_names(
    tmp_path, monkeypatch, checkpointing
):
    # transformers 5.0-5.24: only gradient_checkpointing(_kwargs)
    old = _stand_in({"activation_checkpointing", "activation_checkpointing_kwargs"})
    monkeypatch.setattr(trainer, "Seq2SeqTrainingArguments", old)
    args = trainer.training_arguments(
        _cfg(tmp_path, gradient_checkpointing=checkpointing), has_eval=False, world_size=1
    )
    assert isinstance(args, old)
    assert args.gradient_checkpointing is checkpointing
    expected = {"use_reentrant": False} if checkpointing else None
    assert args.gradient_checkpointing_kwargs == expected
    assert not hasattr(args, "activation_checkpointing")


def test_releases_with_activation_checkpointing_get_the_new_names(tmp_path, monkeypatch):
    new = _stand_in(set())
    if "activation_checkpointing" not in {f.name for f in dataclasses.fields(new)}:
        pytest.skip("the installed transformers predates activation_checkpointing")
    monkeypatch.setattr(trainer, "Seq2SeqTrainingArguments", new)
    args = trainer.training_arguments(
        _cfg(tmp_path, gradient_checkpointing=True), has_eval=True, world_size=2
    )
    assert args.activation_checkpointing is True
    assert args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert args.gradient_checkpointing is None  # the deprecated alias is left unset
    assert args.ddp_find_unused_parameters is False and args.ddp_backend == "gloo"


def test_the_installed_release_accepts_every_argument(tmp_path):
    cfg = _cfg(tmp_path, gradient_checkpointing=True).resolved(False, False)
    args = trainer.training_arguments(cfg, has_eval=False, world_size=1)
    # whichever name the release knows, checkpointing is on, non-reentrant
    assert args.gradient_checkpointing is True
    kwargs = getattr(args, "activation_checkpointing_kwargs", None)
    assert (kwargs or args.gradient_checkpointing_kwargs) == {"use_reentrant": False}
    assert args.remove_unused_columns is False and args.label_names == ["labels"]


def test_an_argument_no_release_knows_is_a_clear_error(tmp_path, monkeypatch):
    # a release lacking an argument we pass under any name (here: eval_strategy)
    monkeypatch.setattr(trainer, "Seq2SeqTrainingArguments", _stand_in({"eval_strategy"}))
    with pytest.raises(RuntimeError, match=r"has no argument eval_strategy.*transformers>=5\.0"):
        trainer.training_arguments(_cfg(tmp_path), has_eval=False, world_size=1)


def test_accepted_kwargs_renames_only_what_is_missing():
    old = _stand_in({"activation_checkpointing", "activation_checkpointing_kwargs"})
    kw = {"activation_checkpointing": True, "activation_checkpointing_kwargs": {"a": 1}}
    assert trainer.accepted_kwargs(kw, old) == {
        "gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"a": 1},
    }
    with pytest.raises(RuntimeError, match="no_such_argument"):
        trainer.accepted_kwargs({"no_such_argument": 1}, old)


def test_the_optimizer_is_the_configured_one(tmp_path):
    # fused AdamW: the same losses as adamw_torch over finetune's first steps on the CPU
    # (checked 2026-12-05 with the tiny model, 3 steps); its speed on a GPU is not measured
    cfg = _cfg(tmp_path, optim="adamw_torch_fused").resolved(False, False)
    args = trainer.training_arguments(cfg, has_eval=False, world_size=1)
    assert args.optim == "adamw_torch_fused"
    assert _cfg(tmp_path).optim == "adamw_torch"
