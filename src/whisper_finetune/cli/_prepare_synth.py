"""``whisper-finetune prepare synth-mandarin``: the built-in synthetic Mandarin corpus.

``cli/prepare.py`` calls :func:`register_synth` with its own subparsers. Example::

    whisper-finetune prepare synth-mandarin --target_dir=data/synth-mandarin \\
        --num_train 320 --num_test 80 --seed 0 --noise_share 0.05
"""

from __future__ import annotations

import argparse
import logging

from whisper_finetune.cli._args import add_dataclass_args, dataclass_from_args
from whisper_finetune.data.synth import SynthConfig

logger = logging.getLogger(__name__)


def register_synth(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``synth-mandarin`` command to the ``prepare`` subcommand's subparsers.

    Args:
        subparsers: what ``prepare``'s ``add_subparsers()`` returned.

    Returns:
        the new parser (its handler is set as ``func``).
    """
    parser = subparsers.add_parser(
        "synth-mandarin",
        help="synthesise a small Mandarin corpus (HSK sentences, espeak-ng)",
        description=(
            "Speak HSK 3.0 sentences (hsk-sentences-audio, CC-BY-SA-4.0) with espeak-ng's "
            "cmn-latn-pinyin voice at varied speed, pitch and voice, add light noise and "
            "gain, and write 16 kHz wavs with train.jsonl and test.jsonl manifests "
            "(disjoint by sentence). Deterministic given --seed; a rerun reuses the wavs "
            "already written. Needs espeak-ng (apt-get install espeak-ng)."
        ),
    )
    add_dataclass_args(parser, SynthConfig)
    parser.set_defaults(func=_cmd_synth)
    return parser


def _cmd_synth(args: argparse.Namespace) -> int:
    from whisper_finetune.data.synth import build_corpus

    cfg = dataclass_from_args(SynthConfig, args)
    result = build_corpus(cfg)
    logger.info(
        "train: %s (%d utterances + %d no-speech, %.1f min); test: %s (%d utterances, %.1f min)",
        result.train_manifest,
        result.num_train,
        result.num_nospeech,
        result.train_seconds / 60,
        result.test_manifest,
        result.num_test,
        result.test_seconds / 60,
    )
    return 0
