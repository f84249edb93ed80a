"""The demo's recipe: its options, its data, and the fine-tuning config it trains with.

The defaults are the recipe tuned for 2 CPU cores (see the comments on each field, and
``benchmarks/forgetting.py`` for the comparison that chose the anchor).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

# guard_data's default: all 48 real clips shipped in the package (the original eight and
# real-zh-dev's 40), written into the run folder as one manifest with a kind per clip
PACKAGE_GUARD = "package"
GUARD_RULES = ("estimate", "upper")  # what must stay within guard_max_increase
MERGE_CHECKPOINTS = ("last", "all")  # which saved checkpoints the guarded merge tries


def resolve_guard_data(cfg: DemoConfig, out: Path) -> DemoConfig:
    """``cfg`` with ``guard_data`` a manifest path: ``package`` becomes ``out/guard/real-speech.jsonl``."""
    from dataclasses import replace

    from whisper_finetune.evaluation.realspeech import write_real_manifest

    if cfg.guard_data != PACKAGE_GUARD:
        return cfg
    return replace(cfg, guard_data=str(write_real_manifest(out / "guard" / "real-speech.jsonl")))


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo; the defaults are the recipe tuned for 2 CPU cores."""

    base_model: str = field(
        default="embedded:whisper-base", metadata={"help": "model to fine-tune"}
    )
    train_data: str | None = field(
        default=None, metadata={"help": "training manifest (default: build the synthetic corpus)"}
    )
    test_data: str | None = field(
        default=None,
        metadata={"help": "test manifest, only reported (default: the synthetic test split)"},
    )
    dev_data: str | None = field(
        default=None,
        metadata={
            "help": "development manifest that chooses the checkpoint and the merge (default: "
            "the synthetic dev split; with --test_data of your own and no --dev_data, the "
            "test manifest's first eval_samples utterances, then not held out)"
        },
    )
    guard_data: str | None = field(
        default=PACKAGE_GUARD,
        metadata={
            "help": "real-speech manifest guarding checkpoints and the merge, measured before and "
            "after ('package': the 48 real clips shipped in the package, the original eight and "
            "real-zh-dev's 40; 'none' for no guard)",
            "aliases": ["real_data"],
        },
    )
    output_dir: str = field(default="runs/demo", metadata={"help": "where everything goes"})
    language: str = field(default="zh", metadata={"help": "language of the data"})
    num_train: int = field(default=640, metadata={"help": "synthetic training utterances"})
    num_test: int = field(default=60, metadata={"help": "synthetic test utterances"})
    num_dev: int = field(
        default=40,
        metadata={"help": "synthetic dev utterances (choose the checkpoint and the merge)"},
    )
    # no-speech clips (silence, noise; empty sentence) teach <|nocaptions|>; each costs a
    # full 30 s encoder pass, as much as a packed window of ~7 utterances
    noise_share: float = field(
        default=0.02, metadata={"help": "no-speech clips, as a share of num_train"}
    )
    pack: bool = field(
        default=True, metadata={"help": "pack training utterances into <=30 s windows"}
    )
    method: str = field(default="lora", metadata={"help": "lora, adalora or full"})
    # measured (benchmarks/forgetting.py --methods rank-32 rank-8): through the guarded
    # merge, rank 8 gave synthetic 0.118 against rank 32's 0.136 with real speech within the
    # guard, at the same cost a step; per checkpoint (docs/forgetting-ranks.json), rank 8's
    # checkpoint 60 at scale 0.7 gave 0.125 / real 0.100, rank 32's at 0.5 0.123 / 0.142
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (alpha = 2 x rank)"})
    # measured (2026-12-01, rank 8, lr 5e-4, merged on the whole split, transformers
    # greedy, one thread; docs/forgetting-adapter-halves.json): adapters on both halves
    # reached synthetic 0.092 / real 0.119 at checkpoint 80 where encoder-only ones reached
    # 0.103 / 0.119, and the dev set's 0.10 after 248 training s instead of 466 (the
    # demo, two threads); decoder-only ones learned little (0.648 at step 20)
    lora_layers: str = field(default="all", metadata={"help": "all, encoder, decoder or a regex"})
    # measured in benchmarks/forgetting.py: distillation (kd, weight 1) kept no checkpoint
    # within the guard and slowed learning, so the demo trains plainly and lets the
    # guarded merge scale trade the two (see the README's forgetting table)
    anchor: str = field(
        default="none",
        metadata={
            "help": "keep the model near the base while training: kd, l2 or none (see finetune --help)"
        },
    )
    anchor_weight: float = field(default=1.0, metadata={"help": "weight of the anchor term"})
    # measured (2026-12-01, rank 8, merged on the whole split, transformers greedy):
    # learning rate 1e-3 for 60 steps gave synthetic / real 0.092 / 0.137 at checkpoint 60,
    # 0.109 / 0.110 merged at 0.8; 5e-4 for 80 steps 0.101 / 0.114 at checkpoint 60 and
    # 0.103 / 0.119 at 80, unscaled, on one thread (on two, checkpoint 80 gave 0.107 /
    # 0.132: the guard's noise) (2e-3 forgot more still): a smaller step moves the encoder
    # less for what it learns (docs/forgetting-2026-12-01.json)
    max_steps: int = field(
        default=80, metadata={"help": "optimizer steps (<= 0: use num_train_epochs)"}
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "epochs, when max_steps <= 0"})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "batch size"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    warmup_steps: int = field(default=5, metadata={"help": "warm-up steps"})
    # bf16 autocast halves a CPU step where the CPU has bf16 instructions (0.97 vs 1.85 s a
    # sample here); fp32 elsewhere
    precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 where the CPU has it, else fp32), bf16 or fp32"},
    )
    eval_steps: int = field(
        default=40,
        metadata={
            "help": "evaluate (the dev set; the guard too with --guard_curve) and checkpoint "
            "every N steps"
        },
    )
    eval_samples: int = field(
        default=40,
        metadata={
            "help": "dev utterances scored at each evaluation during training and by each "
            "trial merge"
        },
    )
    guard_max_increase: float = field(
        default=0.01, metadata={"help": "largest CER increase on the guard set the merge may cause"}
    )
    # the guard's verdict is a change of corpus CER over 48 clips (~1,400 characters: one
    # character is +0.0007); its noise is stated as a paired bootstrap interval over clips.
    # "estimate" passes a merge on the change itself, "upper" only when the interval's upper
    # end is within guard_max_increase too (stricter: with 48 clips the interval is about
    # +-0.01 wide, so "upper" asks for no measurable loss at all)
    # the guard chooses nothing during training (the merge step does), and 48 clips cost
    # about as much as 6 minutes of audio per evaluation: off unless the curve is wanted
    guard_curve: bool = field(
        default=False,
        metadata={
            "help": "also score the guard set at every evaluation during training (the "
            "time-to-CER plot's guard curve; one guard evaluation per eval_steps)"
        },
    )
    guard_rule: str = field(
        default="estimate",
        metadata={
            "help": "what must stay within guard_max_increase: estimate (the CER change) or upper "
            "(the upper end of its 95%% paired-bootstrap interval over clips)",
            "choices": GUARD_RULES,
        },
    )
    # measured (2026-12-06, the 2026-12-05 run's checkpoint 80, CTranslate2 int8, beam 5;
    # docs/results.md "the trade-off of one training run"): the decoder's adapters at 1.0,
    # 0.7, 0.5, 0.4, 0.3 changed the guard by +0.025, +0.019, +0.011, +0.017, +0.013, all
    # with synthetic <= 0.103: below 0.7 the steps move less than the guard's noise, and
    # each weight tried costs about a minute; the encoder's adapters weakened cost the
    # synthetic split far more than they saved (0.7: 0.123, 0.5: 0.151)
    merge_scales: tuple[float, ...] = field(
        default=(1.0, 0.5, 0.3),
        metadata={"help": "merge scales tried per checkpoint, largest first"},
    )
    # measured (2026-12-06, same grid, test split of 60): every merge of checkpoint 40 was
    # matched or beaten by one of checkpoint 80 (40 with the decoder at 0.5: 0.118 / +0.010;
    # 80 at 0.5: 0.092 / +0.011), and the 40-clip dev split read 0.089 for it: a half-trained
    # checkpoint chosen on dev noise. Scales of the last checkpoint are the trade-off's knob.
    merge_checkpoints: str = field(
        default="last",
        metadata={
            "help": "checkpoints the guarded merge tries: last (the final one, at each merge "
            "scale) or all (every saved one, newest first)",
            "choices": MERGE_CHECKPOINTS,
        },
    )
    target_cer: float | None = field(
        default=0.10,
        metadata={
            "help": "dev CER the merge should reach: of the merges that keep the guard, "
            "one that reaches it is chosen; when none does, the one that forgets least of "
            "those that reach it (none: the guard alone decides)"
        },
    )
    # measured on the demo's checkpoint 80 (2026-12-01, transformers greedy, synthetic /
    # real; same file): the decoder's adapters at 0.8 and the encoder's whole gave 0.098 / 0.110, the
    # encoder's at 0.8 and the decoder's whole 0.114 / 0.123: what costs real speech is
    # the decoder's part (the encoder's part alone gave 0.129 / 0.128: the halves learn together)
    scale_part: str = field(
        default="auto",
        metadata={
            "help": "adapters the guard's merge scale weakens: decoder (the encoder's stay whole), all, "
            "or auto (decoder when --lora_layers is all or decoder, else all)"
        },
    )
    quantization: str = field(default="int8", metadata={"help": "CTranslate2 quantization"})
    batch_size: int = field(default=8, metadata={"help": "evaluation batch size"})
    # the guard and the target are judged with CTranslate2 int8 (the deployed form) at
    # faster-whisper's default beam 5, as the independent check scores them.
    # Measured 2026-12-06 (this machine, whisper-base, the 48-clip guard): CTranslate2 beam 5
    # decodes about 1.3 clips a second; transformers fp32 at beam 5 took 8.8 s a clip (7 min
    # for the guard alone), so transformers evaluations stay greedy (transformers_beam_size)
    beam_size: int = field(
        default=5,
        metadata={
            "help": "beam width of the CTranslate2 evaluations: the guard's, the target's and "
            "the report's (1: greedy)"
        },
    )
    transformers_beam_size: int = field(
        default=1,
        metadata={"help": "beam width of the transformers evaluations (1: greedy)"},
    )
    max_new_tokens: int | None = field(
        default=None,
        metadata={
            "help": "cap on generated tokens per clip in evaluations (none: twice what the longest reference needs)"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed for corpus, packing and training"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output_dir"})

    def __post_init__(self):
        if isinstance(self.guard_data, str) and self.guard_data.strip().lower() in ("", "none"):
            object.__setattr__(self, "guard_data", None)
        if self.guard_rule not in GUARD_RULES:
            raise ValueError(f"--guard_rule must be estimate or upper, got {self.guard_rule!r}")
        if self.merge_checkpoints not in MERGE_CHECKPOINTS:
            raise ValueError(
                f"--merge_checkpoints must be last or all, got {self.merge_checkpoints!r}"
            )
        if self.scale_part not in ("auto", "decoder", "all"):
            raise ValueError(f"--scale_part must be auto, decoder or all, got {self.scale_part!r}")
        if self.scale_part == "auto":
            object.__setattr__(
                self, "scale_part", "decoder" if self.lora_layers in ("all", "decoder") else "all"
            )
        if self.scale_part == "decoder" and self.lora_layers == "encoder":
            raise ValueError(
                "--scale_part=decoder with --lora_layers=encoder: the adapter has no decoder part "
                "to scale; pass --scale_part=all"
            )

    def merge_candidates(self, checkpoints: list) -> list:
        """The saved checkpoints (in step order) the guarded merge tries."""
        return list(checkpoints[-1:] if self.merge_checkpoints == "last" else checkpoints)

    def merge_weights(self, scale: float) -> dict[str, float]:
        """``merge_adapter`` keyword arguments for the guard's merge ``scale``."""
        return (
            {"scale": 1.0, "decoder_scale": scale}
            if self.scale_part == "decoder"
            else {"scale": scale}
        )


@dataclass
class Stages:
    """Wall-clock seconds per named stage (``with stages("finetune"): ...``)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str):
        logger.info("=== %s ===", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            logger.info("=== %s done in %.0f s ===", name, self.seconds[name])


def cpu_precision(requested: str) -> str:
    """``auto`` -> bf16 where this CPU runs bf16 natively, else fp32; others unchanged."""
    if requested != "auto":
        return requested
    import torch

    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):
        return "fp32"


def build_data(cfg: DemoConfig, out: Path, stages: Stages) -> tuple[str, str, str]:
    """``(train, dev, test)`` manifests: the user's, or the synthetic corpus (train packed).

    The dev set (the synthetic corpus's ``num_dev`` sentences, or ``--dev_data``) is what
    chooses: scored during training and by the guarded merge's search. The test split is
    only reported. A user's ``--test_data`` without ``--dev_data`` also chooses (its first
    ``eval_samples`` utterances), and the report says its figure is then not held out.
    """
    train_data, dev_data, test_data = cfg.train_data, cfg.dev_data, cfg.test_data
    if train_data is None:
        from whisper_finetune.data.synth import SynthConfig, build_corpus

        with stages("corpus"):
            corpus = build_corpus(
                SynthConfig(
                    target_dir=str(out / "corpus"),
                    num_train=cfg.num_train,
                    num_dev=0 if dev_data else cfg.num_dev,
                    num_test=cfg.num_test,
                    noise_share=cfg.noise_share,
                    seed=cfg.seed,
                )
            )
        train_data, test_data = str(corpus.train_manifest), test_data or str(corpus.test_manifest)
        dev_data = dev_data or (str(corpus.dev_manifest) if corpus.dev_manifest else None)
    if test_data is None:
        raise ValueError("--test_data is needed with --train_data")
    if cfg.pack:
        from whisper_finetune.data.recipes.pack import PackConfig, pack_manifest

        with stages("pack"):
            packed = pack_manifest(
                PackConfig(train_data, str(out / "packed" / "train.jsonl"), seed=cfg.seed)
            )
            train_data = str(packed.output)
    return train_data, dev_data or test_data, test_data


def training_config(cfg: DemoConfig, output_dir: Path, train_data: str, dev_data: str, **overrides):
    """The :class:`~whisper_finetune.training.config.FinetuneConfig` the demo trains with.

    The dev set's first ``eval_samples`` utterances (and the guard set with
    ``guard_curve``) are scored every ``eval_steps`` (the CER-against-time curve), and a
    checkpoint is saved each time; the demo then merges the saved checkpoints and chooses
    among the merges (:func:`~whisper_finetune.demo.measure.search_merges`). Choosing the
    checkpoint by the guard's unscaled CER instead was measured: when every checkpoint
    breaks it, the least-forgetting one is the earliest and undertrained, e.g. synthetic
    CER 0.55 at step 30 of 120.
    """
    from whisper_finetune.training.config import FinetuneConfig

    values = dict(
        base_model=cfg.base_model,
        train_data=train_data,
        test_data=dev_data if cfg.eval_steps > 0 else None,
        output_dir=str(output_dir),
        language=cfg.language,
        method=cfg.method,
        lora_r=cfg.lora_r,
        lora_alpha=2 * cfg.lora_r,
        lora_layers=cfg.lora_layers,
        anchor=cfg.anchor if cfg.method != "full" else "none",
        anchor_weight=cfg.anchor_weight,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        precision=cpu_precision(cfg.precision),
        logging_steps=2,
        eval_steps=cfg.eval_steps if cfg.eval_steps > 0 else None,
        save_steps=cfg.eval_steps if cfg.eval_steps > 0 else 10_000,
        max_eval_samples=cfg.eval_samples,
        guard_data=cfg.guard_data if cfg.eval_steps > 0 and cfg.guard_curve else None,
        guard_max_increase=None,
        report_to=("tensorboard",),
        cache_features=True,
        seed=cfg.seed,
        num_threads=2,
    )
    values.update(overrides)
    return FinetuneConfig(**values)
