"""Check a manifest before training: files, durations, lengths and label sizes.

Every record is checked for:

- the audio file exists and decodes (each file once, however many records share it);
- ``duration`` matches the decoded duration (of the ``start_time``..``end_time`` slice)
  within ``duration_tolerance`` seconds;
- ``audio.start_time``/``end_time`` and ``sentences`` timestamps lie within the audio;
- the audio lasts at most ``max_duration`` seconds (Whisper silently truncates longer
  input while keeping the whole label);
- the label fits Whisper's 448-position decoder. With a tokenizer the count is exact:
  the text tokens plus the special tokens of the label, with or without timestamps,
  whichever is longer. Without one it is an upper bound: the sentence's UTF-8 byte
  count, since Whisper's byte-level BPE never makes more tokens than bytes (3 per CJK
  character).

Files are measured once each, in parallel processes (``--workers``); a WAV file shorter
than its header says is reported as truncated. The per-record results are cached beside
the manifest for ``finetune`` (:mod:`whisper_finetune.data.checkcache`). An empty
manifest, or a tokenizer that cannot be loaded, is an error, not a pass.

Problems are reported as ``file:line: field: problem``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from whisper_finetune.data.checkcache import (
    CheckCache,
    cache_path,
    fingerprint,
    record_key,
    write_cache,
)
from whisper_finetune.data.cuts import is_cutset
from whisper_finetune.data.inputs import file_problem, require_file
from whisper_finetune.data.manifest import (
    Manifest,
    ManifestError,
    Record,
    parse_record,
    record_identity,
)
from whisper_finetune.data.recipes import audio_duration_s, decoded_duration_s
from whisper_finetune.data.wavheader import wav_truncation
from whisper_finetune.staging import check_output_file

logger = logging.getLogger(__name__)

WHISPER_MAX_TOKENS = 448
# <|startoftranscript|> <|zh|> <|transcribe|> <|notimestamps|> ... <|endoftext|>
_SPECIAL_NO_TIMESTAMPS = 5
# <|startoftranscript|> <|zh|> <|transcribe|> ... <|endoftext|>, plus 2 per sentence
_SPECIAL_TIMESTAMPS = 4
# files per worker below which a process pool costs more than it saves
_MIN_FILES_PER_WORKER = 16


@dataclass(frozen=True)
class ValidateConfig:
    """Options of the manifest check."""

    manifest: str = field(default="", metadata={"help": "the manifest to check"})
    max_duration: float = field(default=30.0, metadata={"help": "longest allowed audio, seconds"})
    tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "Whisper tokenizer for exact label lengths: a folder with "
            "tokenizer.json, the file, a hub id or embedded:whisper-base (None: an "
            "upper-bound estimate, 3 tokens per CJK character)"
        },
    )
    max_tokens: int = field(
        default=WHISPER_MAX_TOKENS, metadata={"help": "decoder positions a label may use"}
    )
    duration_tolerance: float = field(
        default=0.1, metadata={"help": "allowed duration difference, seconds"}
    )
    decode: bool = field(
        default=True,
        metadata={"help": "decode every file (false: read only the headers, faster)"},
    )
    report: str | None = field(
        default=None,
        metadata={"help": "also write the report as JSON (never over the manifest or its audio)"},
    )
    workers: int = field(
        default=0,
        metadata={"help": "processes that decode the audio (0: one per CPU core)"},
    )
    cache: bool = field(
        default=True,
        metadata={
            "help": "write <manifest>.checked.json beside the manifest; finetune reuses it "
            "instead of decoding the corpus again while the manifest is unchanged"
        },
    )


@dataclass(frozen=True)
class Problem:
    """One fault of one record."""

    location: str  # "train.jsonl:12"
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.field}: {self.message}"


@dataclass(frozen=True)
class ValidationResult:
    """What :func:`validate_manifest` found.

    Attributes:
        manifest: the manifest checked.
        records: how many records it has (well-formed or not).
        problems: every fault, in line order.
        token_counter: ``tokenizer:<spec>`` or ``estimate (UTF-8 bytes)``.
    """

    manifest: str
    records: int
    problems: tuple[Problem, ...]
    token_counter: str

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_json(self) -> dict:
        """The report as a JSON-serialisable dict."""
        return {
            "manifest": self.manifest,
            "records": self.records,
            "ok": self.ok,
            "token_counter": self.token_counter,
            "problems": [asdict(p) for p in self.problems],
        }


def load_token_counter(spec: str | None) -> tuple[Callable[[str], int], str]:
    """A function counting a text's Whisper tokens, and its description.

    Args:
        spec: ``None`` for the byte-count upper bound; ``embedded:whisper-base``; a folder
            with ``tokenizer.json``; a ``tokenizer.json`` file; or a hub id.

    Returns:
        ``(count, description)``.

    Raises:
        FileNotFoundError: the tokenizer cannot be found or loaded, or what loads is not
            a Whisper tokenizer.
    """
    if not spec:
        return (lambda text: len(text.encode("utf-8"))), "estimate (UTF-8 bytes)"
    from transformers import WhisperTokenizerFast

    from whisper_finetune.models.store import EMBEDDED_MODELS, EMBEDDED_PREFIX

    source = spec
    if spec.startswith(EMBEDDED_PREFIX):
        import importlib.util

        name = spec[len(EMBEDDED_PREFIX) :]
        if name not in EMBEDDED_MODELS:
            raise FileNotFoundError(
                f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}"
            )
        module = importlib.util.find_spec(EMBEDDED_MODELS[name][0])
        if module is None or module.origin is None:
            raise FileNotFoundError(f"{spec} needs the package {EMBEDDED_MODELS[name][0]}")
        source = str(Path(module.origin).parent / "data")
    try:
        if Path(source).is_file():
            tok = WhisperTokenizerFast(tokenizer_file=source)
        else:
            tok = WhisperTokenizerFast.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        raise FileNotFoundError(f"cannot load the tokenizer {spec!r}: {exc}") from exc
    # from_pretrained on a folder without tokenizer files gives an empty tokenizer that
    # counts every label as 0 tokens; a Whisper tokenizer knows its special tokens
    if "<|startoftranscript|>" not in tok.get_vocab() or not tok.encode(
        "你好 hello", add_special_tokens=False
    ):
        raise FileNotFoundError(
            f"cannot load the tokenizer {spec!r}: no Whisper tokenizer there "
            "(expected tokenizer.json, or vocab.json and merges.txt)"
        )
    return (lambda text: len(tok.encode(text, add_special_tokens=False))), f"tokenizer:{spec}"


def label_tokens(record: Record, count: Callable[[str], int]) -> int:
    """Decoder positions the record's label needs, with or without timestamps."""
    plain = count(record.sentence) + _SPECIAL_NO_TIMESTAMPS
    if not record.sentences:
        return plain
    timed = _SPECIAL_TIMESTAMPS + sum(count(s.text) + 2 for s in record.sentences)
    return max(plain, timed)


def _measure(job: tuple[str, bool]) -> tuple[str, float | str, tuple[float, float] | None]:
    """``(path, seconds or the error, truncation)`` of one audio file (in a worker)."""
    path, decode = job
    if (problem := file_problem(path)) is not None:
        return path, problem.replace(f"{path} not found", f"file not found: {path}"), None
    measure = decoded_duration_s if decode else audio_duration_s
    try:
        seconds: float | str = measure(path)
    except (ValueError, OSError, RuntimeError) as exc:
        return path, f"does not decode: {str(exc) or type(exc).__name__}", None
    return path, seconds, wav_truncation(path)


def _measure_all(paths: list[str], decode: bool, workers: int) -> dict:
    """Measure every file once, in ``workers`` processes when there are enough files."""
    jobs = [(p, decode) for p in paths]
    bar = dict(total=len(jobs), desc="decoding" if decode else "reading headers", unit="file")
    if workers <= 1 or len(jobs) < _MIN_FILES_PER_WORKER * 2:
        return {p: (v, t) for p, v, t in tqdm(map(_measure, jobs), **bar)}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(workers, len(jobs) // _MIN_FILES_PER_WORKER)
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        chunk = max(1, min(64, len(jobs) // (workers * 8)))
        done = pool.map(_measure, jobs, chunksize=chunk)
        return {p: (v, t) for p, v, t in tqdm(done, **bar)}


class _Checker:
    def __init__(self, config: ValidateConfig, count: Callable[[str], int], files: dict):
        self.config = config
        self.count = count
        self.files = files  # path -> (seconds or the error, truncation or None)

    def audio_seconds(self, r: Record) -> float | str:
        """What the cache keeps for a record: its seconds of audio (the slice, its end
        clipped to the file, as training reads it), or why there is none."""
        total, _ = self.files[r.audio_path]
        if isinstance(total, str):
            return total
        start = r.start_time or 0.0
        if start >= total:
            return f"{r.audio_path}: start ({start}s) is beyond the end of the audio ({total:.3f}s)"
        end = total if r.end_time is None else min(r.end_time, total)
        return end - start

    def check(self, r: Record) -> Iterator[tuple[str, str]]:
        """(field, message) for each fault of one well-formed record."""
        c = self.config
        tol = c.duration_tolerance
        actual = None
        total, truncated = self.files[r.audio_path]
        if isinstance(total, str):
            yield "audio.path", total
        else:
            if truncated:
                yield (
                    "audio.path",
                    f"truncated: the header promises {truncated[0]:.2f} s but the file "
                    f"holds {truncated[1]:.2f} s",
                )
            actual = yield from self._check_span(r, total, tol)
        if r.duration is None:
            yield "duration", "missing (training filters samples by it)"
        elif actual is not None and abs(r.duration - actual) > tol:
            yield (
                "duration",
                f"{r.duration:.2f} s in the manifest but the audio lasts {actual:.2f} s",
            )
        length = actual if actual is not None else r.duration
        if length is not None and length > c.max_duration:
            yield (
                "duration",
                (
                    f"{length:.2f} s exceeds {c.max_duration:g} s: Whisper truncates "
                    "the audio but not the label"
                ),
            )
        for i, s in enumerate(r.sentences):
            if length is not None and s.end > length + tol:
                yield (
                    f"sentences[{i}].end",
                    f"{s.end:.2f} s is after the end of the audio ({length:.2f} s)",
                )
        n = label_tokens(r, self.count)
        if n > c.max_tokens:
            how = "" if c.tokenizer else " (upper-bound estimate; --tokenizer counts exactly)"
            yield (
                "sentence",
                (
                    f"label needs {n} tokens{how}, more than Whisper's "
                    f"{c.max_tokens}-token decoder limit"
                ),
            )

    def _check_span(self, r: Record, total: float, tol: float):
        start = r.start_time or 0.0
        if r.start_time is not None and r.start_time >= total:
            yield (
                "audio.start_time",
                f"{r.start_time:.2f} s is beyond the end of the file ({total:.2f} s)",
            )
            return None
        if r.end_time is not None and r.end_time > total + tol:
            yield (
                "audio.end_time",
                f"{r.end_time:.2f} s is beyond the end of the file ({total:.2f} s)",
            )
            return None
        end = r.end_time if r.end_time is not None else total
        return end - start


def validate_manifest(config: ValidateConfig) -> ValidationResult:
    """Check every record of a manifest; write a JSON report if asked, and the cache.

    Files are measured once each, in ``config.workers`` processes; then the records are
    checked in order. With ``config.cache`` the per-record audio checks are written
    beside the manifest (:mod:`whisper_finetune.data.checkcache`) for ``finetune``.

    Args:
        config: the manifest and the limits to check against.

    Returns:
        the problems found (none means the manifest is ready for training).

    Raises:
        FileNotFoundError: the manifest or the tokenizer is missing, or the tokenizer
            cannot be loaded.
        ManifestError: the manifest holds no records, or is a JSON list that does not
            parse.
    """
    if not config.manifest:
        raise ValueError("a manifest to validate is required")
    path = Path(config.manifest).expanduser()
    require_file(path)
    if is_cutset(path):
        raise ValueError(
            f"{path} is a Lhotse CutSet: write its manifest with `whisper-finetune prepare "
            f"lhotse --cuts={path}` and validate that"
        )
    report_path = None
    if config.report:  # before any work: the report never replaces an input
        report_path = check_output_file(
            config.report, "--report", sources=(path, cache_path(path) if config.cache else None)
        )
    count, counter = load_token_counter(config.tokenizer)
    print_ = fingerprint(path) if config.cache else None
    manifest = Manifest(path, check=False)  # raises on an empty manifest
    paths: dict[str, None] = {}
    for where, _line, obj in manifest.iter_raw():
        with contextlib.suppress(ManifestError):
            if not isinstance(obj, ManifestError):
                paths.setdefault(parse_record(obj, where, path.parent).audio_path)
    if report_path is not None and report_path.exists():  # nor the audio a record names
        check_output_file(report_path, "--report", sources=tuple(paths))
    workers = config.workers if config.workers > 0 else (os.cpu_count() or 1)
    checker = _Checker(config, count, _measure_all(list(paths), config.decode, workers))
    problems: list[Problem] = []
    audio: dict[str, float | str] = {}
    records = malformed = 0
    seen: dict[tuple, int] = {}
    for where, line, obj in tqdm(manifest.iter_raw(), desc="checking", unit="rec"):
        records += 1
        try:
            if isinstance(obj, ManifestError):
                raise obj
            record = parse_record(obj, where, path.parent)
        except ManifestError as exc:
            message = str(exc).removeprefix(f"{where}: ")
            problems.append(Problem(where, line, "record", message))
            malformed += 1
            continue
        first = seen.setdefault(record_identity(record), line)
        if first != line:  # the same sample twice weighs it double in training
            problems.append(Problem(where, line, "record", f"the same record as line {first}"))
        audio[record_key(where, path)] = checker.audio_seconds(record)
        problems.extend(Problem(where, line, f, m) for f, m in checker.check(record))
    result = ValidationResult(str(path), records, tuple(problems), counter)
    # a header-only check never replaces the results of a full decode of the same file
    keep = not config.decode and getattr(CheckCache.load(path), "decoded", False)
    if config.cache and not keep:
        try:
            written = write_cache(path, print_, audio, decoded=config.decode, malformed=malformed)
            logger.info("Wrote the audio checks to %s (finetune reuses them)", written)
        except OSError as exc:  # a read-only corpus folder: the check itself still counts
            logger.warning("could not write the check cache beside %s: %s", path, exc)
    if report_path is not None:
        report = report_path
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(
            json.dumps(result.to_json(), ensure_ascii=False, indent=2), encoding="utf-8"
        )
        logger.info("Wrote the report to %s", report)
    return result
