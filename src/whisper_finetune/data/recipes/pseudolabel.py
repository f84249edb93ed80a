"""``prepare pseudo-label``: transcribe unlabelled audio with a teacher, keep what it is sure of.

distil-whisper's pseudo-labelling, used against forgetting: real speech the fine-tune
never had labels for is transcribed by the base model (or any teacher, any backend), and
the clips whose transcripts the teacher agrees with itself on become a replay manifest
(``finetune --replay_data``), so the decoder keeps hearing real speech with the base
model's own answers while it learns a new domain.

Each clip is decoded twice, greedy and with beam search. It is kept when

* both transcripts are non-empty after normalisation (``normalize_text``, numerals
  included) and the beam transcript has at least ``min_chars`` characters;
* the two agree: the character error rate of the greedy transcript against the beam one
  is at most ``max_disagreement`` (distil-whisper's WER filter, with the beam transcript
  in place of a human label);
* neither loops: the beam transcript's compression ratio (zlib, as Whisper's decoder
  computes it) is at most ``max_compression_ratio``;
* its rate is speech-like: at most ``max_chars_per_second`` characters per second of audio
  (a hallucinated transcript of noise is often far too long for its clip).

The kept clips are written as a manifest (the beam transcript as ``sentence``,
``pseudo_label: true``, the teacher's name), and every clip's verdict, with the reason for
each drop, into a JSON report beside it. The teacher is a
:class:`~whisper_finetune.inference.base.Transcriber` handed in by the caller (the command
line loads it), so this module needs no inference code.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from whisper_finetune.data.manifest import ManifestError, Record, parse_record, write_manifest

logger = logging.getLogger(__name__)

REPORT_SUFFIX = ".report.json"


@dataclass(frozen=True)
class PseudoLabelConfig:
    """What to pseudo-label and what to keep."""

    audio: str = field(
        default="",
        metadata={
            "help": "a folder of audio files (searched recursively) or a manifest whose "
            "'sentence' may be missing or empty (it is not used)"
        },
    )
    output: str = field(
        default="",
        metadata={"help": "the manifest to write (JSON Lines); the report goes beside it"},
    )
    language: str = field(default="zh", metadata={"help": "language of the audio"})
    beam_size: int = field(default=5, metadata={"help": "beam width of the second decode"})
    max_disagreement: float = field(
        default=0.1,
        metadata={"help": "largest CER of the greedy transcript against the beam one that is kept"},
    )
    max_compression_ratio: float = field(
        default=2.4, metadata={"help": "largest zlib compression ratio of a kept transcript"}
    )
    max_chars_per_second: float = field(
        default=12.0, metadata={"help": "most transcript characters per second of audio kept"}
    )
    min_chars: int = field(default=2, metadata={"help": "fewest transcript characters kept"})
    max_duration: float = field(
        default=30.0, metadata={"help": "longest clip in seconds (Whisper's window)"}
    )
    batch_size: int = field(default=8, metadata={"help": "clips decoded per batch"})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "most tokens decoded per clip; none = no cap"}
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output"})

    def __post_init__(self):
        if self.beam_size < 2:
            raise ValueError(f"--beam_size must be >= 2 (the second decode), got {self.beam_size}")
        if not 0 <= self.max_disagreement <= 1:
            raise ValueError(f"--max_disagreement must lie in [0, 1], got {self.max_disagreement}")
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")


@dataclass
class Verdict:
    """One clip's pseudo-label and whether it was kept (``reason`` says why not)."""

    audio: str
    origin: str
    duration: float
    greedy: str
    beam: str
    disagreement: float | None
    compression_ratio: float
    kept: bool
    check: str = ""  # the failed check: empty, min_chars, disagreement, repetition, rate, duration
    reason: str = ""


@dataclass
class PseudoLabelResult:
    manifest: Path
    report: Path
    kept: int
    dropped: dict[str, int]
    verdicts: list[Verdict]


def audio_records(source: str | os.PathLike) -> list[Record]:
    """The clips to label: every audio file under a folder, or a manifest's records.

    A manifest's ``sentence`` may be missing (unlabelled audio); other fields are
    checked as usual, with errors naming the file and line.
    """
    from whisper_finetune.data.recipes import AUDIO_EXTENSIONS

    path = Path(source)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
        )
        if not files:
            raise ValueError(f"{path}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
        return [Record(str(p.resolve()), "", origin=str(p)) for p in files]
    if not path.is_file():
        raise FileNotFoundError(f"--audio: {path} is neither a folder nor a manifest")
    text = path.read_text(encoding="utf-8")
    base = path.resolve().parent
    if text.lstrip().startswith("["):
        try:
            items = list(enumerate(json.loads(text)))
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}: not a JSON list: {exc}") from exc
        where = [f"{path} item {i}" for i, _ in items]
        objs = [o for _, o in items]
    else:
        objs, where = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                objs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{n}: not JSON: {exc}") from exc
            where.append(f"{path}:{n}")
    records = []
    for obj, w in zip(objs, where, strict=True):
        if isinstance(obj, dict) and obj.get("sentence") is None:
            obj = dict(obj, sentence="")
        record = parse_record(obj, w, base)
        records.append(
            Record(
                record.audio_path,
                "",
                None,
                record.start_time,
                record.end_time,
                prompt=record.prompt,
                origin=w,
            )
        )
    if not records:
        raise ValueError(f"{path}: the manifest has no records")
    return records


def compression_ratio(text: str) -> float:
    """UTF-8 length over zlib-compressed length (Whisper's repetition check)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def disagreement(beam: str, greedy: str) -> float:
    """Character error rate of ``greedy`` against ``beam`` (normalized, spaces ignored)."""
    import jiwer

    ref, hyp = "".join(beam.split()), "".join(greedy.split())
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0
    out = jiwer.process_characters(ref, hyp)
    return (out.substitutions + out.deletions + out.insertions) / len(ref)


def judge(
    cfg: PseudoLabelConfig, record: Record, duration: float, greedy: str, beam: str
) -> Verdict:
    """Keep or drop one clip's pseudo-label; the first failed check is the reason."""
    from whisper_finetune.text import normalize_text

    g = normalize_text(greedy, normalize_numbers=cfg.language == "zh")
    b = normalize_text(beam, normalize_numbers=cfg.language == "zh")
    chars = len("".join(b.split()))
    ratio = compression_ratio(beam.strip())
    dis = disagreement(b, g) if b or g else None
    verdict = Verdict(
        record.audio_path,
        record.origin,
        round(duration, 3),
        greedy,
        beam,
        dis,
        round(ratio, 3),
        False,
    )
    if not b or not g:
        verdict.check, verdict.reason = "empty", "a transcript is empty"
    elif chars < cfg.min_chars:
        verdict.check, verdict.reason = (
            "min_chars",
            f"{chars} characters < min_chars {cfg.min_chars}",
        )
    elif dis > cfg.max_disagreement:
        verdict.check = "disagreement"
        verdict.reason = f"greedy and beam disagree: CER {dis:.3f} > {cfg.max_disagreement}"
    elif ratio > cfg.max_compression_ratio:
        verdict.check = "repetition"
        verdict.reason = f"compression ratio {ratio:.2f} > {cfg.max_compression_ratio}"
    elif duration > 0 and chars / duration > cfg.max_chars_per_second:
        verdict.check = "rate"
        verdict.reason = f"{chars / duration:.1f} characters a second > {cfg.max_chars_per_second}"
    else:
        verdict.kept = True
    return verdict


def pseudo_label(
    cfg: PseudoLabelConfig, transcriber, greedy_options, beam_options, teacher: str = ""
) -> PseudoLabelResult:
    """Transcribe ``cfg.audio`` twice with ``transcriber`` and write the clips it agrees on.

    Args:
        cfg: what to label and the thresholds.
        transcriber: any :class:`~whisper_finetune.inference.base.Transcriber`.
        greedy_options, beam_options: the two decodes'
            :class:`~whisper_finetune.inference.transcript.DecodeOptions`.
        teacher: the teacher's name, written on every kept line and in the report.

    Returns:
        A :class:`PseudoLabelResult`; the manifest holds the kept clips, the report
        (``<output>.report.json``) every clip's transcripts and verdict.

    Raises:
        FileExistsError: when the output exists and ``cfg.overwrite`` is false.
        ValueError: when no audio is found, or a clip cannot be read (naming it).
    """
    from whisper_finetune.data.audio import SAMPLE_RATE, load_audio

    if not cfg.output:
        raise ValueError("--output is required (the manifest to write)")
    output = Path(cfg.output)
    report_path = output.with_name(output.name + REPORT_SUFFIX)
    if not cfg.overwrite and (output.exists() or report_path.exists()):
        raise FileExistsError(f"{output} exists; pass --overwrite or another --output")
    records = audio_records(cfg.audio)
    logger.info("pseudo-labelling %d clips with %s", len(records), teacher or "the teacher")
    verdicts: list[Verdict] = []
    kept: list[Record] = []
    for first in range(0, len(records), cfg.batch_size):
        batch = records[first : first + cfg.batch_size]
        clips, usable = [], []
        for r in batch:
            try:
                wave = load_audio(r.audio_path, r.start_time, r.end_time)
            except (OSError, ValueError) as exc:
                raise ValueError(f"{r.origin}: cannot read audio {r.audio_path}: {exc}") from exc
            duration = wave.size / SAMPLE_RATE
            if duration > cfg.max_duration:
                reason = f"{duration:.1f} s > max_duration {cfg.max_duration}"
                verdicts.append(
                    Verdict(
                        r.audio_path,
                        r.origin,
                        round(duration, 3),
                        "",
                        "",
                        None,
                        0.0,
                        False,
                        "duration",
                        reason,
                    )
                )
                continue
            clips.append(wave)
            usable.append((r, duration))
        if not clips:
            continue
        greedy = transcriber.transcribe_batch(clips, greedy_options)
        beam = transcriber.transcribe_batch(clips, beam_options)
        for (r, duration), g, b in zip(usable, greedy, beam, strict=True):
            v = judge(cfg, r, duration, g.text, b.text)
            verdicts.append(v)
            if v.kept:
                kept.append(
                    Record(
                        r.audio_path,
                        b.text.strip(),
                        round(duration, 3),
                        r.start_time,
                        r.end_time,
                        language=cfg.language,
                        prompt=r.prompt,
                    )
                )
    dropped: dict[str, int] = {}
    for v in verdicts:
        if not v.kept:
            dropped[v.check] = dropped.get(v.check, 0) + 1
    write_manifest(kept, output)
    _mark_pseudo(output, teacher)
    summary = {
        "teacher": teacher,
        "audio": str(cfg.audio),
        "clips": len(verdicts),
        "kept": len(kept),
        "dropped": dropped,
        "thresholds": {
            "max_disagreement": cfg.max_disagreement,
            "max_compression_ratio": cfg.max_compression_ratio,
            "max_chars_per_second": cfg.max_chars_per_second,
            "min_chars": cfg.min_chars,
            "beam_size": cfg.beam_size,
        },
        "clips_detail": [v.__dict__ for v in verdicts],
    }
    tmp = report_path.with_name(report_path.name + ".tmp")
    tmp.write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, report_path)
    logger.info(
        "kept %d of %d clips -> %s (report: %s)", len(kept), len(verdicts), output, report_path
    )
    return PseudoLabelResult(output, report_path, len(kept), dropped, verdicts)


def _mark_pseudo(manifest: Path, teacher: str) -> None:
    """Add ``pseudo_label: true`` and the teacher to every line (extra fields readers ignore)."""
    lines = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            obj.update(pseudo_label=True, teacher=teacher)
            lines.append(json.dumps(obj, ensure_ascii=False))
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    os.replace(tmp, manifest)
