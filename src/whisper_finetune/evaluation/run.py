"""Run ``evaluate`` and ``infer`` over many records: checks first, then one or many processes.

What the commands do, in order:

1. check the output location (writable; an evaluation folder holding only an earlier
   report, never the test data's own folder);
2. check every record's audio (:func:`~whisper_finetune.evaluation.evaluate.check_audio`)
   and stop with the whole list, or skip the bad records and list them in the summary;
3. load the model (under ``torchrun``: this rank's GPU, or its share of the CPU cores);
4. transcribe this rank's share (:mod:`~whisper_finetune.evaluation.distributed`),
   streaming each result to disk;
5. rank 0 gathers every rank's results and writes one report in manifest order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from whisper_finetune.data.manifest import Record
from whisper_finetune.evaluation import distributed as D
from whisper_finetune.evaluation.evaluate import (
    UTTERANCES_FILE,
    EvalConfig,
    EvalDataError,
    EvalReport,
    UtteranceLog,
    _report,
    check_audio,
    evaluate,
    record_line,
    write_report,
)
from whisper_finetune.inference.transcript import DecodeOptions
from whisper_finetune.staging import (
    check_output_dir,
    check_output_file,
    check_replaceable,
    output_lock,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalJob:
    """One ``whisper-finetune evaluate`` run.

    Attributes:
        test_data: the manifest.
        config: metric, batching, normalization, decoding.
        load: keyword arguments of :func:`whisper_finetune.inference.loader.load_transcriber`.
        output_dir: where ``summary.json`` and ``utterances.jsonl`` go (``None``: nowhere;
            the results are still streamed to a temporary file while the run lasts).
        skip_bad_samples: score the records whose audio passes the checks, and list the
            others in the summary, instead of stopping.
        meta: more summary fields (model, backend, ...).
    """

    test_data: str
    config: EvalConfig = field(default_factory=EvalConfig)
    load: dict = field(default_factory=dict)
    output_dir: str | None = None
    skip_bad_samples: bool = False
    meta: dict = field(default_factory=dict)


def bad_records(
    manifest: str, records: Sequence[Record], dist: D.Dist, skip: bool
) -> tuple[list[Record], list[dict]]:
    """The records to use and the skipped ones; rank 0 checks, every rank gets its answer.

    Raises:
        EvalDataError: listing every bad record, when ``skip`` is false.
    """
    problems = D.broadcast(check_audio(manifest) if dist.is_main else None, dist)
    lines = [record_line(r) for r in records]
    skipped = [
        {"origin": r.origin, "audio": r.audio_path, "problems": problems[line]}
        for r, line in zip(records, lines, strict=True)
        if line in problems
    ]
    if skipped and not skip:
        listing = "\n".join(f"  {s['origin']}: {'; '.join(s['problems'])}" for s in skipped)
        raise EvalDataError(
            f"{len(skipped)} of {len(records)} records cannot be evaluated (nothing was "
            f"transcribed; fix them, or pass --skip_bad_samples to score the rest):\n{listing}"
        )
    for s in skipped:
        logger.warning("skipped %s: %s", s["origin"], "; ".join(s["problems"]))
    return [r for r, line in zip(records, lines, strict=True) if line not in problems], skipped


def _temp_file(name: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f"whisper-finetune-{name}-", suffix=".jsonl")
    os.close(fd)
    return Path(tmp)


def _clear_earlier_report(out: Path, dist: D.Dist) -> None:
    """An earlier run's report must never sit beside this run's partial results."""
    (out / "summary.json").unlink(missing_ok=True)
    if dist.active:
        (out / UTTERANCES_FILE).unlink(missing_ok=True)
    for old in out.glob("utterances.rank*-of-*.jsonl"):
        if not old.name.endswith(f"-of-{dist.world}.jsonl"):  # this run's own are in use
            old.unlink(missing_ok=True)


def run_evaluation(job: EvalJob, load_transcriber: Callable) -> tuple[EvalReport, dict] | None:
    """Evaluate ``job``.

    Args:
        job: what to evaluate and where to write.
        load_transcriber: :func:`whisper_finetune.inference.loader.load_transcriber`.

    Returns:
        On rank 0, the merged report and the summary's extra fields (written to
        ``job.output_dir`` when given); ``None`` on the other ranks.

    Raises:
        EvalDataError: bad records (all listed) before the model loads, or an unreadable
            record part-way (naming where the results so far are).
        whisper_finetune.staging.UnsafeOutputError: the output folder cannot be used.
    """
    from whisper_finetune.data.manifest import read_manifest

    dist = D.start(job.load.get("device", "auto"))
    hold = contextlib.ExitStack()
    try:
        out = Path(job.output_dir).expanduser() if job.output_dir else None
        if out is not None:
            check_output_dir(out)
            check_replaceable(out, kind="evaluation", sources=(job.test_data,))
            if not dist.active:
                # one writer per report folder; the ranks of a sharded run share theirs
                # (a refused rank would leave the others waiting at the barrier)
                hold.enter_context(output_lock(out))
        records = read_manifest(job.test_data)
        logger.info("%d utterances in %s", len(records), job.test_data)
        keep, skipped = bad_records(job.test_data, records, dist, job.skip_bad_samples)
        threads = D.cpu_threads(dist, job.load.get("cpu_threads", 0))
        transcriber = load_transcriber(**{**job.load, "cpu_threads": threads})
        mine = [keep[i] for i in D.shard(len(keep), dist)]
        if out is None:
            path = _temp_file("eval")
        elif dist.active:
            path = out / f"utterances.{dist.suffix()}.jsonl"
        else:
            path = out / UTTERANCES_FILE
        if out is not None and dist.is_main:
            _clear_earlier_report(out, dist)
        log = UtteranceLog(path)
        report, error = None, None
        config = job.config if dist.is_main else replace(job.config, progress=False)
        try:
            report = evaluate(transcriber, mine, config, log)
        except Exception as exc:
            if not dist.active:
                raise
            error = str(exc)
        finally:
            log.close()
        done = report.utterances if report else ()
        seconds = report.elapsed_seconds if report else 0.0
        results, elapsed = D.gather(done, error, dist, seconds)
        final = None
        if dist.is_main:
            # transcription time: the slowest rank's (the ranks run side by side)
            final = (_report(job.config.metric, results, max(elapsed)), {**job.meta})
            final[1]["processes"] = dist.world
            if job.skip_bad_samples:
                final[1].update(n_skipped=len(skipped), skipped=skipped)
            if out is not None:
                summary, utterances = write_report(final[0], out, **final[1])
                logger.info("wrote %s and %s", summary, utterances)
        D.barrier(dist)
        if out is None or dist.active:
            path.unlink(missing_ok=True)  # merged into the report
        return final
    finally:
        hold.close()
        D.finish(dist)


def list_inputs(path: str | os.PathLike) -> list[Record]:
    """The audio of a manifest (its slices too), or every audio file under a folder, sorted.

    Raises:
        FileNotFoundError: nothing at ``path``, or a folder without audio files.
    """
    from whisper_finetune.data.manifest import read_manifest
    from whisper_finetune.data.recipes import AUDIO_EXTENSIONS

    src = Path(path).expanduser()
    if src.is_file():
        return read_manifest(src)
    if not src.is_dir():
        raise FileNotFoundError(f"not found: {src}")
    files = sorted(
        p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    if not files:
        raise FileNotFoundError(f"{src} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return [Record(str(p), "", origin=str(p.relative_to(src))) for p in files]


@dataclass(frozen=True)
class TranscribeJob:
    """``whisper-finetune infer`` over a manifest or a folder.

    Attributes:
        inputs: a manifest (``.json``/``.jsonl``) or a folder of audio files.
        decode: decoding options (a manifest record's own ``language`` wins).
        load: keyword arguments of :func:`whisper_finetune.inference.loader.load_transcriber`.
        output_file: the JSON Lines (or text) file to write; ``None``: stdout.
        output_format: ``json`` (one JSON object a line) or ``txt`` (``audio<TAB>text``).
        remove_pun, to_simple: as for one file.
    """

    inputs: str
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    load: dict = field(default_factory=dict)
    output_file: str | None = None
    output_format: str = "json"
    remove_pun: bool = False
    to_simple: bool = False


def _line(record: Record, transcript, fmt: str) -> str:
    if fmt == "txt":
        return f"{record.audio_path}\t{transcript.text}\n"
    item = {"audio": record.audio_path}
    if record.start_time is not None or record.end_time is not None:
        item.update(start_time=record.start_time, end_time=record.end_time)
    return json.dumps({**item, **transcript.to_dict()}, ensure_ascii=False) + "\n"


def run_transcription(job: TranscribeJob, load_transcriber: Callable) -> str | None:
    """Transcribe every input; rank 0 writes (or returns) the lines in input order.

    Returns:
        On rank 0, the whole output when ``job.output_file`` is ``None`` (else the file
        is written, and ``""`` returned); ``None`` on the other ranks.

    Raises:
        RuntimeError: a failure part-way, saying where the finished results are.
    """
    from whisper_finetune.data.audio import load_audio

    if job.output_format not in ("json", "txt"):
        raise ValueError(
            f"--output_format={job.output_format} needs one audio file; over a manifest or "
            "a folder the output is json (JSON Lines) or txt"
        )
    dist = D.start(job.load.get("device", "auto"))
    try:
        out = check_output_file(job.output_file, sources=(job.inputs,)) if job.output_file else None
        records = list_inputs(job.inputs)
        threads = D.cpu_threads(dist, job.load.get("cpu_threads", 0))
        transcriber = load_transcriber(**{**job.load, "cpu_threads": threads})
        mine = [records[i] for i in D.shard(len(records), dist)]
        if out is None:
            path = _temp_file("infer")
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            path = out.with_name(f"{out.name}.{dist.suffix()}.partial")
        lines: list[str] = []
        error = None
        with open(path, "w", encoding="utf-8") as partial:
            for record in mine:
                try:
                    options = replace(job.decode, language=record.language or job.decode.language)
                    sliced = record.start_time is not None or record.end_time is not None
                    audio = (
                        load_audio(record.audio_path, record.start_time, record.end_time)
                        if sliced
                        else record.audio_path
                    )
                    transcript = transcriber.transcribe(audio, options).normalized(
                        job.remove_pun, job.to_simple
                    )
                except Exception as exc:
                    error = (
                        f"{record.origin or record.audio_path}: {type(exc).__name__}: {exc}; the "
                        f"{len(lines)} transcript(s) finished before it are in {path}"
                    )
                    break
                lines.append(_line(record, transcript, job.output_format))
                partial.write(lines[-1])
                partial.flush()  # on disk now
        merged, _ = D.gather(lines, error, dist)
        text = None
        if dist.is_main:
            text = "".join(merged)
            if out is not None:
                tmp = out.with_name(out.name + ".tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, out)
                logger.info("wrote %d transcripts to %s", len(merged), out)
                text = ""
        D.barrier(dist)
        path.unlink(missing_ok=True)
        return text
    finally:
        D.finish(dist)
