"""Score a transcriber on a manifest: corpus-level CER or WER, plus a per-utterance report.

Evaluation depends only on the :class:`~whisper_finetune.inference.base.Transcriber`
protocol, so the same manifest compares a transformers model with its CTranslate2
conversion, or a base model with its fine-tune. References and hypotheses go through
the same :func:`~whisper_finetune.text.normalize_text` (punctuation removed and
traditional converted to simplified by default), and the score is total errors over
total reference units, not a mean of per-utterance rates.

A record whose audio cannot be read stops the evaluation with an error naming its
manifest line: a silently skipped utterance would make the score incomparable. The
command line checks every record's audio first (:func:`check_audio`, the checks of
``prepare validate``), before the model loads, and stops with the whole list, or, with
``--skip_bad_samples``, scores the rest and lists the skipped records in the summary.
Per-utterance results are written as they are produced (:class:`UtteranceLog`), so a
failure late in a long run keeps them, and its error says where they are.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from whisper_finetune.data.manifest import Record
from whisper_finetune.inference.transcript import DecodeOptions

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
UTTERANCES_FILE = "utterances.jsonl"


# languages whose numerals normalize_numbers=None (auto) converts: cn2an reads Chinese
NUMERAL_LANGUAGES = ("zh",)


def numbers_normalized(config: EvalConfig, language: str | None) -> bool:
    """Whether numerals are normalized for a record in ``language`` under ``config``."""
    if config.normalize_numbers is not None:
        return config.normalize_numbers
    return language in NUMERAL_LANGUAGES


class EvalDataError(ValueError):
    """A manifest record cannot be evaluated; the message names the manifest line."""


class EvalInterrupted(RuntimeError):
    """The evaluation failed part-way; the message says where the results so far are."""


# what `prepare validate` checks of a record's audio (its other checks are about training)
AUDIO_FIELDS = ("record", "audio.path", "audio.start_time", "audio.end_time")


def check_audio(manifest: str | os.PathLike, *, decode: bool = False) -> dict[int, list[str]]:
    """Every record's audio problems, by manifest location (``file:line``), before any model.

    The checks are ``prepare validate``'s (:func:`whisper_finetune.data.recipes.validate.validate_manifest`):
    the file exists, its header (or, with ``decode``, all of it) decodes, and the
    ``start_time``/``end_time`` slice lies inside the file. Validation's training-only
    checks (manifest duration, 30 s limit, label length) are left out.

    Returns:
        ``{line: [problem, ...]}``, empty when every record is fine: the manifest line
        (the item's position in a JSON list), as :func:`record_line` gives it.
    """
    from whisper_finetune.data.recipes.validate import ValidateConfig, validate_manifest

    config = ValidateConfig(
        manifest=str(manifest),
        max_duration=math.inf,
        max_tokens=2**62,
        decode=decode,
        workers=1,
        cache=False,  # a header check is quick; leave no cache beside a test set
    )
    found: dict[str, list[str]] = {}
    for p in validate_manifest(config).problems:
        if p.field in AUDIO_FIELDS:
            found.setdefault(p.line, []).append(f"{p.field}: {p.message}")
    return found


def record_line(record: Record) -> int | None:
    """The manifest line (or JSON list position) a record came from, from its origin."""
    match = re.search(r"(?::| item )(\d+)$", record.origin)
    return int(match.group(1)) if match else None


class UtteranceLog:
    """Per-utterance results appended to a JSON Lines file as they are produced."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.count = 0

    def write(self, result: UtteranceResult) -> None:
        self._file.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
        self._file.flush()  # on disk now: a crash later loses nothing already scored
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def where(self) -> str:
        return f"the {self.count} utterance(s) scored before it are in {self.path}"


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate.

    Attributes:
        metric: ``"cer"`` (characters, for Chinese) or ``"wer"`` (words).
        batch_size: utterances per :meth:`~whisper_finetune.inference.base.Transcriber.transcribe_batch` call.
        remove_punctuation: strip punctuation from both sides before scoring.
        to_simplified: convert traditional Chinese to simplified on both sides.
        normalize_numbers: write Arabic numerals as Chinese ones on both sides
            (:func:`~whisper_finetune.text.normalize_numerals`, cn2an), so ``40`` and
            ``四十`` score the same; ``None`` (the default) does so for records in Chinese
            (:data:`NUMERAL_LANGUAGES`) only.
        decode: decoding options; a record's own ``language`` overrides ``decode.language``.
        progress: show a tqdm progress bar (on stderr).
    """

    metric: str = "cer"
    batch_size: int = 8
    remove_punctuation: bool = True
    to_simplified: bool = True
    normalize_numbers: bool | None = None
    decode: DecodeOptions = field(default_factory=lambda: DecodeOptions(language="zh"))
    progress: bool = True

    def __post_init__(self) -> None:
        if self.metric not in ("cer", "wer"):
            raise ValueError(f"metric must be cer or wer, got {self.metric!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class UtteranceResult:
    """One scored utterance, as written to ``utterances.jsonl``."""

    audio: str
    reference: str
    hypothesis: str
    reference_normalized: str
    hypothesis_normalized: str
    errors: int
    ref_units: int
    duration: float
    start_time: float | None = None
    end_time: float | None = None
    language: str | None = None
    origin: str = ""
    # the hypothesis repeats a phrase (compression ratio > 2.4): a decoding loop
    repetition: bool = False


@dataclass(frozen=True)
class EvalReport:
    """The outcome of :func:`evaluate`.

    Attributes:
        metric: ``"cer"`` or ``"wer"``.
        value: total errors / total reference units (``inf`` when the references are
            empty but the hypotheses are not, 0.0 when both are empty).
        n_utts: utterances scored.
        n_ref_units: reference characters (cer) or words (wer).
        errors: substitutions + deletions + insertions, summed.
        audio_seconds: total audio duration.
        elapsed_seconds: time spent transcribing (audio decoding excluded).
        utterances: per-utterance results, in manifest order.
    """

    metric: str
    value: float
    n_utts: int
    n_ref_units: int
    errors: int
    audio_seconds: float
    elapsed_seconds: float
    utterances: tuple[UtteranceResult, ...] = ()

    @property
    def rtf(self) -> float:
        """Real-time factor: transcription seconds per second of audio."""
        return self.elapsed_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def summary(self, **extra) -> dict:
        """The ``summary.json`` content; ``extra`` (model, backend, ...) is merged in."""
        return {
            "metric": self.metric,
            "value": self.value if math.isfinite(self.value) else None,
            "n_utts": self.n_utts,
            "n_ref_units": self.n_ref_units,
            "errors": self.errors,
            "n_repetitions": sum(u.repetition for u in self.utterances),
            **extra,
            "audio_seconds": round(self.audio_seconds, 3),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "rtf": round(self.rtf, 4),
        }


def _load(record: Record):
    from whisper_finetune.data.audio import load_audio

    try:
        return load_audio(record.audio_path, record.start_time, record.end_time)
    except (OSError, ValueError) as exc:
        where = record.origin or record.audio_path
        raise EvalDataError(f"{where}: cannot read audio {record.audio_path}: {exc}") from exc


def evaluate(
    transcriber,
    records: Sequence[Record],
    config: EvalConfig = EvalConfig(),
    log: UtteranceLog | None = None,
) -> EvalReport:
    """Transcribe every record and score the transcripts against the references.

    Args:
        transcriber: any :class:`~whisper_finetune.inference.base.Transcriber`.
        records: manifest records (see :func:`whisper_finetune.data.manifest.read_manifest`).
        config: metric, batching, normalization and decoding options.
        log: where each utterance's result is written as soon as it is scored.

    Returns:
        An :class:`EvalReport` with the corpus score and every utterance.

    Raises:
        EvalDataError: when a record's audio cannot be read (names the manifest line,
            and, with ``log``, where the results so far are).
        EvalInterrupted: when anything else fails part-way, with ``log``: says where
            the results so far are.
    """
    from tqdm.auto import tqdm

    records = list(records)
    results: list[UtteranceResult] = []
    elapsed = [0.0]
    bar = tqdm(total=len(records), unit="utt", disable=not config.progress, desc=config.metric)
    try:
        for first in range(0, len(records), config.batch_size):
            batch = records[first : first + config.batch_size]
            for result in _score_batch(transcriber, batch, config, elapsed):
                results.append(result)
                if log is not None:
                    log.write(result)
            bar.update(len(batch))
            errors_so_far = sum(r.errors for r in results)
            units_so_far = sum(r.ref_units for r in results)
            if units_so_far:
                bar.set_postfix({config.metric: f"{errors_so_far / units_so_far:.4f}"})
    except EvalDataError as exc:
        raise EvalDataError(f"{exc}; {log.where()}" if log else str(exc)) from exc
    except Exception as exc:
        if log is None:
            raise
        raise EvalInterrupted(f"{type(exc).__name__}: {exc}; {log.where()}") from exc
    finally:
        bar.close()
    return _report(config.metric, results, elapsed[0])


def _score_batch(transcriber, batch: list[Record], config: EvalConfig, elapsed: list[float]):
    from whisper_finetune.data.audio import SAMPLE_RATE
    from whisper_finetune.evaluation.metrics import error_counts, is_repetition
    from whisper_finetune.text import normalize_text

    def norm(text: str, language: str | None) -> str:
        numbers = numbers_normalized(config, language)
        return normalize_text(text, config.remove_punctuation, config.to_simplified, numbers)

    clips = [_load(r) for r in batch]
    hyps: list[str] = [""] * len(batch)
    # a record's own language wins; clips of one language share a batch call
    languages = [r.language or config.decode.language for r in batch]
    for language in dict.fromkeys(languages):
        idx = [i for i, lang in enumerate(languages) if lang == language]
        options = replace(config.decode, language=language)
        start = time.perf_counter()
        transcripts = transcriber.transcribe_batch([clips[i] for i in idx], options)
        elapsed[0] += time.perf_counter() - start
        for i, t in zip(idx, transcripts, strict=True):
            hyps[i] = t.text
    for record, clip, hyp, language in zip(batch, clips, hyps, languages, strict=True):
        ref_n, hyp_n = norm(record.sentence, language), norm(hyp, language)
        errors, units = error_counts(ref_n, hyp_n, config.metric)
        yield UtteranceResult(
            audio=record.audio_path,
            reference=record.sentence,
            hypothesis=hyp,
            reference_normalized=ref_n,
            hypothesis_normalized=hyp_n,
            errors=errors,
            ref_units=units,
            duration=clip.size / SAMPLE_RATE,
            start_time=record.start_time,
            end_time=record.end_time,
            language=language,
            origin=record.origin,
            repetition=is_repetition(hyp),
        )


def _report(metric: str, results: list[UtteranceResult], elapsed: float) -> EvalReport:
    errors = sum(r.errors for r in results)
    units = sum(r.ref_units for r in results)
    # an empty reference set follows whisper_finetune.evaluation.metrics.score's convention
    value = errors / units if units else (math.inf if errors else 0.0)
    return EvalReport(
        metric=metric,
        value=value,
        n_utts=len(results),
        n_ref_units=units,
        errors=errors,
        audio_seconds=sum(r.duration for r in results),
        elapsed_seconds=elapsed,
        utterances=tuple(results),
    )


def write_report(report: EvalReport, output_dir: str | os.PathLike, **extra) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``utterances.jsonl`` into ``output_dir``.

    Args:
        report: what :func:`evaluate` returned.
        output_dir: folder to write into (created if needed; files are replaced).
        **extra: more summary fields, e.g. ``model=...``, ``backend=...``.

    Returns:
        The paths of the summary and of the per-utterance file.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, utterances = out / SUMMARY_FILE, out / UTTERANCES_FILE
    tmp = utterances.with_name(utterances.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for u in report.utterances:
            f.write(json.dumps(asdict(u), ensure_ascii=False) + "\n")
    os.replace(tmp, utterances)
    tmp = summary.with_name(summary.name + ".tmp")
    tmp.write_text(
        json.dumps(report.summary(**extra), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    os.replace(tmp, summary)
    return summary, utterances
