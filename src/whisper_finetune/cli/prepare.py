"""``whisper-finetune prepare``: build and check training manifests.

Sub-commands: ``aishell``, ``wenetspeech``, ``lhotse``, ``folder``, ``pack``, ``validate`` (and
``synth-mandarin`` where :mod:`whisper_finetune.cli._prepare_synth` is installed).
"""

from __future__ import annotations

import argparse

from whisper_finetune.cli._args import add_dataclass_args, dataclass_from_args
from whisper_finetune.data.recipes.aishell import AishellConfig
from whisper_finetune.data.recipes.folder import FolderConfig
from whisper_finetune.data.recipes.lhotse import LhotseConfig
from whisper_finetune.data.recipes.pack import PackConfig
from whisper_finetune.data.recipes.pseudolabel import PseudoLabelConfig
from whisper_finetune.data.recipes.validate import ValidateConfig
from whisper_finetune.data.recipes.wenetspeech import WenetSpeechConfig


def _print_counts(manifests: dict[str, str], counts: dict[str, int], extra: str = "") -> None:
    for split, path in manifests.items():
        print(f"{split}: {counts[split]} records -> {path}")
    if extra:
        print(extra)


def _run_aishell(args: argparse.Namespace) -> int:
    from whisper_finetune.data.recipes.aishell import prepare_aishell

    result = prepare_aishell(dataclass_from_args(AishellConfig, args))
    missing = ", ".join(f"{k} {v}" for k, v in result.untranscribed.items())
    _print_counts(
        result.manifests,
        result.utterances,
        f"wavs without transcript (left out): {missing}; transcript lines without wav: "
        f"{result.unused_transcripts}"
        + (f"; skipped (already done): {', '.join(result.skipped)}" if result.skipped else ""),
    )
    return 0


def _run_wenetspeech(args: argparse.Namespace) -> int:
    from whisper_finetune.data.recipes.wenetspeech import prepare_wenetspeech

    r = prepare_wenetspeech(dataclass_from_args(WenetSpeechConfig, args))
    _print_counts(
        r.manifests,
        r.samples,
        f"segments kept: {sum(r.segments.values())}; low confidence dropped: {r.low_confidence}; "
        f"too long: {r.too_long}; samples with silenced gaps: {r.silenced}; "
        f"recordings without audio: {r.missing_audio}",
    )
    return 0


def _run_folder(args: argparse.Namespace) -> int:
    from whisper_finetune.data.recipes.folder import prepare_folder
    from whisper_finetune.staging import output_lock

    config = dataclass_from_args(FolderConfig, args)
    with output_lock(config.target_dir or config.input_dir, "--target_dir"):  # issue 27.4
        r = prepare_folder(config)
    left_out = "; ".join(f"{k}: {len(v)}" for k, v in r.problems.items())
    _print_counts(r.manifests, r.utterances, f"left out: {left_out}" if left_out else "")
    return 0


def _run_lhotse(args: argparse.Namespace) -> int:
    from whisper_finetune.data.recipes.lhotse import prepare_lhotse

    r = prepare_lhotse(dataclass_from_args(LhotseConfig, args))
    left_out = ", ".join(f"{k}: {v}" for k, v in r.skipped.items()) or "none"
    print(
        f"{r.cuts} cuts -> {r.records} records -> {r.manifest} "
        f"({r.split} cuts split into several records; left out: {left_out})"
    )
    return 0


def _run_validate(args: argparse.Namespace) -> int:
    from whisper_finetune.data.recipes.validate import validate_manifest

    result = validate_manifest(
        dataclass_from_args(ValidateConfig, args, manifest=args.manifest_path)
    )
    for problem in result.problems:
        print(problem)
    verdict = "OK" if result.ok else f"{len(result.problems)} problem(s)"
    print(
        f"{result.manifest}: {result.records} records, {verdict} (token count: {result.token_counter})"
    )
    return 0 if result.ok else 1


_RECIPES = (
    (
        "aishell",
        AishellConfig,
        _run_aishell,
        "AISHELL-1 (OpenSLR 33): download or --filepath data_aishell.tgz, extract, write "
        "train/dev/test manifests",
    ),
    (
        "wenetspeech",
        WenetSpeechConfig,
        _run_wenetspeech,
        "WenetSpeech: pack segments of long recordings into <=30 s timestamped samples",
    ),
    (
        "lhotse",
        LhotseConfig,
        _run_lhotse,
        "a Lhotse CutSet (or recordings + supervisions) from any of Lhotse's corpus recipes",
    ),
    (
        "folder",
        FolderConfig,
        _run_folder,
        "your recordings (metadata.csv or same-named .txt files) into train/test manifests",
    ),
)


def _run_pack(args: argparse.Namespace) -> int:
    from whisper_finetune.data.recipes.pack import pack_manifest
    from whisper_finetune.staging import output_lock

    config = dataclass_from_args(PackConfig, args)
    with output_lock(config.output, "--output"):  # one writer (issue 27.4)
        result = pack_manifest(config)
    print(
        f"{result.n_input} utterances -> {result.n_windows} windows of up to 30 s "
        f"({result.seconds / 60:.1f} min), {result.n_single} kept single, "
        f"{result.n_unpacked} left unpacked -> {result.output}"
    )
    return 0


def _run_pseudo_label(args: argparse.Namespace) -> int:
    from whisper_finetune.cli.infer import RuntimeOptions, quiet_libraries, runtime_kwargs
    from whisper_finetune.data.recipes.pseudolabel import pseudo_label
    from whisper_finetune.inference.loader import load_transcriber
    from whisper_finetune.inference.transcript import DecodeOptions

    cfg = dataclass_from_args(PseudoLabelConfig, args)
    runtime = dataclass_from_args(RuntimeOptions, args)
    if not cfg.audio or not cfg.output:
        raise ValueError("--audio and --output are required")
    quiet_libraries(args)
    transcriber = load_transcriber(**runtime_kwargs(runtime, cfg.batch_size))
    # one plain pass each: a temperature fallback would sample, and agreement would be chance
    plain = dict(language=cfg.language, without_timestamps=True, robust=False)
    greedy = DecodeOptions(**plain, beam_size=1, max_new_tokens=cfg.max_new_tokens)
    beam = DecodeOptions(**plain, beam_size=cfg.beam_size, max_new_tokens=cfg.max_new_tokens)
    teacher = f"{runtime.model_path} ({runtime.backend}, {runtime.compute_type})"
    r = pseudo_label(cfg, transcriber, greedy, beam, teacher=teacher)
    dropped = ", ".join(f"{k}: {v}" for k, v in r.dropped.items()) or "none"
    print(
        f"kept {r.kept} of {len(r.verdicts)} clips -> {r.manifest} (dropped: {dropped}; "
        f"each clip's verdict: {r.report})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` command and its recipes to the top-level parser."""
    parser = subparsers.add_parser(
        "prepare",
        help="build training manifests from corpora or your own recordings, and check them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)
    recipes = parser.add_subparsers(dest="recipe", metavar="RECIPE")
    for name, config_cls, handler, help_text in _RECIPES:
        p = recipes.add_parser(name, help=help_text, description=help_text)
        add_dataclass_args(p, config_cls)
        p.set_defaults(func=handler)
    p = recipes.add_parser(
        "pack",
        help="pack short utterances into <=30 s windows with timestamps (faster training)",
        description=(
            "Concatenate short utterances into windows of up to 30 s with per-sentence "
            "timestamps: Whisper pads every input to 30 s, so packing divides the encoder "
            "cost per utterance by the number of utterances per window."
        ),
    )
    add_dataclass_args(p, PackConfig)
    p.set_defaults(func=_run_pack)
    p = recipes.add_parser(
        "validate",
        help="check a manifest: files decode, durations, <=30 s, labels within 448 tokens",
        description="Check a manifest; prints 'file:line: field: problem' and exits 1 on any.",
    )
    p.add_argument("manifest_path", metavar="MANIFEST", help="the manifest to check")
    add_dataclass_args(p, ValidateConfig, exclude=("manifest",))
    p.set_defaults(func=_run_validate)
    from whisper_finetune.cli.infer import RuntimeOptions

    p = recipes.add_parser(
        "pseudo-label",
        help="transcribe unlabelled audio with a teacher (greedy and beam) and keep what they "
        "agree on: a replay manifest for finetune --replay_data",
        description=(
            "Transcribe a folder or manifest of unlabelled audio twice with a teacher model "
            "(--model_path, any backend; embedded:whisper-base by default), greedy and beam "
            "search, and write the clips whose transcripts agree (CER <= --max_disagreement), "
            "do not repeat and have a speech-like rate as a manifest; every clip's verdict "
            "and the reason for each drop go to <output>.report.json."
        ),
    )
    add_dataclass_args(p, PseudoLabelConfig)
    add_dataclass_args(p, RuntimeOptions)
    p.set_defaults(func=_run_pseudo_label)
    try:
        from whisper_finetune.cli._prepare_synth import register_synth
    except ModuleNotFoundError as exc:  # written separately; absent in some checkouts
        if exc.name != "whisper_finetune.cli._prepare_synth":
            raise
    else:
        register_synth(recipes)
