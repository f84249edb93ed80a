"""Lhotse CutSets into our manifests: ``whisper-finetune prepare lhotse``.

Lhotse (PyPI ``lhotse``, the optional extra ``whisper-finetune[lhotse]``) has tested
recipes for dozens of corpora (AISHELL-1/2/4, WenetSpeech, KeSpeech, MagicData, Common
Voice, GigaSpeech, ...). Run its recipe, then turn the result into a manifest::

    lhotse prepare aishell /data/aishell /data/manifests
    whisper-finetune prepare lhotse \\
        --recordings=/data/manifests/aishell_recordings_train.jsonl.gz \\
        --supervisions=/data/manifests/aishell_supervisions_train.jsonl.gz \\
        --target_dir=dataset --name=train

or, from a CutSet, ``--cuts=cuts_train.jsonl.gz``. ``finetune --train_data`` also takes a
CutSet file directly. How cuts become records is described in
:mod:`whisper_finetune.data.cuts`: a cut's slice of its recording, its supervisions as
``sentences`` with times relative to the cut and a Whisper language code per record
(mixed-language cuts are split per supervision), long cuts packed into windows of whole
supervisions of at most ``max_duration`` seconds.

Reading a CutSet file needs no Lhotse; joining recordings and supervisions does.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from whisper_finetune.data.cuts import convert_cuts
from whisper_finetune.data.manifest import ManifestError, parse_record, write_manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LhotseConfig:
    """Options of ``prepare lhotse``."""

    cuts: str | None = field(
        default=None, metadata={"help": "a Lhotse CutSet file (cuts.jsonl.gz or .jsonl)"}
    )
    recordings: str | None = field(
        default=None,
        metadata={"help": "a Lhotse RecordingSet file (with --supervisions, instead of --cuts)"},
    )
    supervisions: str | None = field(
        default=None, metadata={"help": "a Lhotse SupervisionSet file (with --recordings)"}
    )
    target_dir: str = field(default="dataset", metadata={"help": "folder for the manifest"})
    name: str | None = field(
        default=None,
        metadata={"help": "manifest name, NAME.jsonl (default: from the input file's name)"},
    )
    max_duration: float = field(
        default=30.0,
        metadata={"help": "longer cuts become windows of whole supervisions of at most this"},
    )


@dataclass(frozen=True)
class LhotseResult:
    """What :func:`prepare_lhotse` wrote.

    Attributes:
        manifest: the manifest path.
        cuts: cuts read.
        records: records written.
        split: cuts that became several records.
        skipped: cuts left out, by reason.
    """

    manifest: str
    cuts: int
    records: int
    split: int
    skipped: dict[str, int]


def _default_name(path: str) -> str:
    name = Path(path).name
    return re.sub(r"(\.jsonl|\.json)?(\.gz)?$", "", name) or "cuts"


def _cuts_from_manifests(recordings: str, supervisions: str, folder: Path) -> Path:
    """Join a RecordingSet and a SupervisionSet into a CutSet file, with Lhotse."""
    try:
        from lhotse import CutSet, load_manifest
    except ImportError as exc:
        raise ImportError(
            "joining --recordings and --supervisions needs Lhotse: pip install "
            "'whisper-finetune[lhotse]' (or pass a CutSet with --cuts)"
        ) from exc
    cuts = CutSet.from_manifests(
        recordings=load_manifest(recordings), supervisions=load_manifest(supervisions)
    )
    path = folder / "cuts.jsonl.gz"
    cuts.to_file(path)
    return path


def prepare_lhotse(config: LhotseConfig) -> LhotseResult:
    """Write the manifest of a Lhotse CutSet (or recordings + supervisions).

    Raises:
        ValueError: neither ``cuts`` nor both ``recordings`` and ``supervisions`` given,
            or no usable cut.
        FileNotFoundError: an input file is missing.
        ManifestError: a cut makes an invalid record (file and line named).
    """
    if bool(config.cuts) == bool(config.recordings or config.supervisions):
        raise ValueError("pass --cuts, or --recordings with --supervisions (not both)")
    if not config.cuts and not (config.recordings and config.supervisions):
        raise ValueError("--recordings and --supervisions go together")
    inputs = [config.cuts] if config.cuts else [config.recordings, config.supervisions]
    for path in inputs:
        if not Path(path).expanduser().is_file():
            raise FileNotFoundError(f"not found: {path}")
    name = config.name or _default_name(config.cuts or config.supervisions)
    out = Path(config.target_dir).expanduser() / f"{name}.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        cuts = config.cuts or _cuts_from_manifests(
            config.recordings, config.supervisions, Path(tmp)
        )
        found = convert_cuts(Path(cuts).expanduser(), config.max_duration)
    if not found.records:
        raise ValueError(f"{inputs[0]}: no usable cuts ({dict(found.skipped) or 'none read'})")
    base = out.parent
    try:
        records = [parse_record(obj, where, base) for where, obj in found.records]
    except ManifestError as exc:
        raise ManifestError(f"{exc} (from {inputs[0]})") from exc
    n = write_manifest(records, out)
    if found.skipped:
        logger.warning("cuts left out: %s", dict(found.skipped))
    return LhotseResult(str(out), found.cuts, n, found.split, dict(found.skipped))
