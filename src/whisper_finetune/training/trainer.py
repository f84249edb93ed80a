"""The Trainer side of a run: ``Seq2SeqTrainer`` subclass, metrics, arguments, guard.

Evaluation generates greedily (``predict_with_generate``, each sample in its own
language, up to twice its label's length) and scores CER/WER with the project's
normalizer, next to the eval loss.

**The forgetting guard.** ``guard_data`` is a second eval set, typically real speech
outside the fine-tuning domain. Its error rate is logged as ``eval_guard_<metric>``
at every evaluation, and once before training, on the base model, as the baseline
(saved in ``guard_baseline.json`` and reused on resume). With ``guard_max_increase=d``
the best checkpoint is chosen by ``eval_guarded_<metric>``:

* a checkpoint whose guard rate is at most ``baseline + d`` scores its main rate;
* one that exceeds it scores ``GUARD_PENALTY + (guard - baseline - d)``.

So every checkpoint that keeps the guard beats every one that does not, the best main
rate wins among those that keep it, and if none does, the one that forgets least wins.

This module imports transformers at import time; :mod:`whisper_finetune.training.train`
imports it lazily.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

from whisper_finetune.training.config import FinetuneConfig

logger = logging.getLogger(__name__)

GUARD_PENALTY = 1000.0  # added to the selection score of checkpoints that break the guard


@dataclass(frozen=True)
class GuardPolicy:
    """Scores checkpoints for selection; see the module docstring."""

    baseline: float
    max_increase: float

    def score(self, main: float, guard: float) -> float:
        excess = guard - (self.baseline + self.max_increase)
        return main if excess <= 1e-12 else GUARD_PENALTY + excess


class WhisperTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` that decodes each sample in its own language and watches a guard set.

    * The training loss is the model's loss plus the terms in :attr:`loss_terms`
      (:meth:`compute_loss` is the one place where extra terms are added; AdaLoRA's
      orthogonal regularizer is one, see :func:`whisper_finetune.training.losses.adalora_orth_reg`).
    * A non-finite loss skips its optimizer step with a warning naming the batch's
      manifest lines (:class:`~whisper_finetune.training.losses.NonFiniteGuard`); after
      ``max_nonfinite_steps`` such steps the run stops with an error.
    * Evaluation generates each sample in its own language (a mixed zh/en dev set is
      not scored on forced-Mandarin output), with a length limit derived from the labels.
    """

    def __init__(
        self,
        *args,
        language: str,
        task: str,
        metric: str,
        guard_dataset=None,
        loss_terms=(),
        anchor=None,
        max_nonfinite_steps: int = 10,
        generation_max_length: int | None = None,
        train_collator=None,
        **kwargs,
    ):
        from whisper_finetune.training.losses import NonFiniteGuard

        super().__init__(*args, **kwargs)
        self.language, self.task, self.metric = language, task, metric
        self.guard_dataset = guard_dataset
        self.guard_policy: GuardPolicy | None = None
        self.loss_terms = list(loss_terms)  # callables model -> scalar tensor, added in training
        self.nonfinite = NonFiniteGuard(max_nonfinite_steps)
        self.add_callback(self.nonfinite)
        self.generation_max_length = generation_max_length
        self.anchor = anchor  # an anchor.Anchor (keep near the base model), or None
        self._anchor_sum, self._anchor_n = 0.0, 0
        # training batches only (e.g. mixing in replay samples); evaluation keeps data_collator
        self.train_collator = train_collator

    def get_train_dataloader(self):
        if self.train_collator is None:
            return super().get_train_dataloader()
        plain, self.data_collator = self.data_collator, self.train_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = plain

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's loss, plus the extra terms; a non-finite loss is neutralised."""
        inputs = dict(inputs)
        origins = inputs.pop("origins", None)
        inputs.pop("languages", None)
        replay_rows = inputs.pop("replay_rows", None)
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if model.training:
            for term in self.loss_terms:  # the one place where extra loss terms are added
                loss = loss + term(model)
            if self.anchor is not None:
                extra = self.anchor.loss(
                    self.accelerator.unwrap_model(model), inputs, outputs, replay_rows
                )
                if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
                    # the Trainer does not divide such losses by the accumulation steps
                    extra = extra / self.current_gradient_accumulation_steps
                self._anchor_sum += float(extra.detach())
                self._anchor_n += 1
                loss = loss + extra
            loss = self.nonfinite.check(loss, model, origins, self.state.global_step)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        inputs = dict(inputs)
        inputs.pop("origins", None)
        inputs.pop("attention_mask", None)  # SpecAugment's; generation needs none
        languages = inputs.pop("languages", None)
        if not gen_kwargs and hasattr(self, "_gen_kwargs"):
            gen_kwargs = self._gen_kwargs.copy()
        if languages and gen_kwargs.get("language") is None:
            gen_kwargs["language"] = list(languages)  # each sample in its own language
        gen_kwargs.setdefault("language", self.language)
        gen_kwargs.setdefault("task", self.task)
        if "labels" in inputs and not self.generation_max_length:
            gen_kwargs.pop("max_new_tokens", None)
            gen_kwargs["max_length"] = generation_limit(inputs["labels"].shape[-1])
        return super().prediction_step(
            model, inputs, prediction_loss_only, ignore_keys, **gen_kwargs
        )

    def log(self, logs, *args, **kwargs):
        if self.anchor is not None and self._anchor_n and "loss" in logs:
            logs["anchor_loss"] = self._anchor_sum / self._anchor_n
            self._anchor_sum, self._anchor_n = 0.0, 0
        super().log(logs, *args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **gen_kwargs):
        gen_kwargs.setdefault("task", self.task)
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix, **gen_kwargs)
        if eval_dataset is not None or metric_key_prefix != "eval" or self.guard_dataset is None:
            return metrics
        metrics.update(
            super().evaluate(self.guard_dataset, ignore_keys, "eval_guard", **gen_kwargs)
        )
        if self.guard_policy is not None:
            key = f"eval_guarded_{self.metric}"
            metrics[key] = self.guard_policy.score(
                metrics[f"eval_{self.metric}"], metrics[f"eval_guard_{self.metric}"]
            )
            self.log({key: metrics[key]})
        return metrics


def generation_limit(label_length: int) -> int:
    """The ``max_length`` to generate for a batch whose labels are ``label_length`` long.

    Labels hold everything after ``<|startoftranscript|>`` (language, task, timestamps
    flag, text, end), so the reference fits in ``label_length + 1`` tokens; twice that
    leaves room for a wrong, longer hypothesis (scored as insertions) without letting a
    repetition loop run to 448 tokens on every clip. Whisper's context caps it at 448.
    """
    return min(448, max(32, 2 * (label_length + 1)))


def compute_metrics(tokenizer, metric: str):
    """``compute_metrics`` for the Trainer: corpus error rate of generated vs reference text."""
    import numpy as np

    from whisper_finetune.evaluation.metrics import score
    from whisper_finetune.text import normalize_text

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def compute(pred) -> dict[str, float]:
        preds = np.where(pred.predictions < 0, pad, pred.predictions)
        labels = np.where(pred.label_ids < 0, pad, pred.label_ids)
        hyps = [normalize_text(t) for t in tokenizer.batch_decode(preds, skip_special_tokens=True)]
        refs = [normalize_text(t) for t in tokenizer.batch_decode(labels, skip_special_tokens=True)]
        return {metric: score(refs, hyps, metric)}

    return compute


def training_arguments(cfg: FinetuneConfig, has_eval: bool, world_size: int):
    """The ``Seq2SeqTrainingArguments`` of a run: the one place config meets transformers."""
    selection = cfg.selection_metric if has_eval else None
    kwargs = dict(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss must show (NonFiniteLossCallback stops the run)
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps if has_eval else None,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        # AdaLoRA checkpoints hold different rank patterns, which peft cannot load into the
        # live model; its best checkpoint is copied instead (see train._save_final)
        load_best_model_at_end=selection is not None and cfg.method != "adalora",
        metric_for_best_model=selection,
        greater_is_better=False if selection else None,
        predict_with_generate=True,
        # None: derived from each batch's labels (WhisperTrainer.prediction_step)
        generation_max_length=cfg.generation_max_length,
        generation_num_beams=1,
        fp16=cfg.precision == "fp16",
        bf16=cfg.precision == "bf16",
        use_cpu=cfg.device == "cpu",
        dataloader_num_workers=cfg.num_workers,
        report_to=[r for r in cfg.report_to if r != "none"],
        seed=cfg.seed,
        remove_unused_columns=False,
        label_names=["labels"],
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False}
        if cfg.gradient_checkpointing
        else None,
        # only trainable parameters take part in DDP; searching for unused ones is wasted time
        ddp_find_unused_parameters=False if world_size > 1 else None,
        ddp_backend="gloo" if world_size > 1 and cfg.device == "cpu" else None,
    )
    return Seq2SeqTrainingArguments(**accepted_kwargs(kwargs, Seq2SeqTrainingArguments))


# Arguments that transformers renamed within the versions pyproject.toml admits: the name
# we pass -> the older spelling to use where the installed release lacks the new one.
# transformers 5.25 added ``activation_checkpointing(_kwargs)`` and kept
# ``gradient_checkpointing(_kwargs)`` as deprecated aliases (to be removed in v6);
# 5.0-5.24 know only the old names (on 5.17 the new one was a TypeError at startup).
RENAMED_ARGUMENTS = {
    "activation_checkpointing": "gradient_checkpointing",
    "activation_checkpointing_kwargs": "gradient_checkpointing_kwargs",
}


def accepted_kwargs(kwargs: dict, arguments_class) -> dict:
    """``kwargs`` spelled the way the installed ``arguments_class`` (a TrainingArguments
    dataclass) accepts them: a renamed argument falls back to its older name; an argument
    it knows under neither name is an error naming the argument and the installed
    transformers, not a ``TypeError`` from deep inside the Trainer."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(arguments_class) if f.init}
    out, unknown = {}, []
    for name, value in kwargs.items():
        if name in fields:
            out[name] = value
        elif RENAMED_ARGUMENTS.get(name) in fields:
            out[RENAMED_ARGUMENTS[name]] = value
        else:
            unknown.append(name)
    if unknown:
        import transformers

        raise RuntimeError(
            f"transformers {transformers.__version__}: {arguments_class.__name__} has no "
            f"argument {', '.join(unknown)}; this project needs transformers>=5.0 "
            "(pip install -U 'transformers>=5.0,<6')"
        )
    return out


def guard_baseline(trainer, cfg: FinetuneConfig, model, n_guard: int, is_main: bool) -> float:
    """The guard set's error rate on the base model, computed once per run folder."""
    path = Path(cfg.output_dir) / "guard_baseline.json"
    key = {
        "base_model": cfg.base_model,
        "guard_data": str(Path(cfg.guard_data).resolve()),
        "n": n_guard,
        "metric": cfg.metric,
    }
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if all(saved.get(k) == v for k, v in key.items()):
            logger.info("guard baseline from %s: %s = %.4f", path, cfg.metric, saved["value"])
            return float(saved["value"])
    # adapters start as a no-op, but disable them anyway: the baseline is the base model
    ctx = model.disable_adapter() if cfg.uses_peft else contextlib.nullcontext()
    with ctx:
        metrics = trainer.evaluate(trainer.guard_dataset, metric_key_prefix="eval_guard")
    value = float(metrics[f"eval_guard_{cfg.metric}"])
    logger.info("guard baseline (base model): %s = %.4f", cfg.metric, value)
    if is_main:
        path.write_text(json.dumps({**key, "value": value}, indent=2), encoding="utf-8")
    return value
