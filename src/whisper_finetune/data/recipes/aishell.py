"""AISHELL-1 (OpenSLR 33): download or take ``data_aishell.tgz``, extract, write manifests.

Replaces the original project's ``aishell.py --filepath=... --target_dir=...``. Steps,
each skipped on a re-run once done:

1. get the archive: ``--filepath`` or a resumable download from OpenSLR, MD5-checked;
2. extract it (marker ``data_aishell/.extracted``);
3. extract every per-speaker archive ``data_aishell/wav/SXXXX.tar.gz`` into
   ``data_aishell/wav/{train,dev,test}/SXXXX/*.wav`` (marker per archive);
4. write ``train.jsonl``, ``dev.jsonl`` and ``test.jsonl`` (atomically) plus
   ``aishell_summary.json`` with the counts.

Sentences come from ``aishell_transcript_v0.8.txt`` with the word-separating spaces
removed. AISHELL-1 ships some wavs that have no transcript line; they are counted,
logged and left out (the original script skipped them silently).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from whisper_finetune.data.manifest import Record, TimedText, write_manifest
from whisper_finetune.data.recipes import (
    audio_duration_s,
    check_md5,
    extract_tar,
    mark_done,
    marker_done,
)

logger = logging.getLogger(__name__)

DATA_URL = "https://www.openslr.org/resources/33/data_aishell.tgz"
# published on https://www.openslr.org/33/
DATA_MD5 = "2f494334227864a8a8fec932999db9d8"
ARCHIVE_NAME = "data_aishell.tgz"
TRANSCRIPT = Path("data_aishell", "transcript", "aishell_transcript_v0.8.txt")
SPLITS = ("train", "dev", "test")
SUMMARY_NAME = "aishell_summary.json"

_DOWNLOAD_CHUNK_BYTES = 1 << 20
_SHOW_IDS = 5  # how many example ids a warning lists


class DownloadError(RuntimeError):
    """The archive could not be downloaded; the message says what to do instead."""


@dataclass(frozen=True)
class AishellConfig:
    """Options of the AISHELL-1 recipe (flags keep the original script's names)."""

    target_dir: str = field(
        default="dataset/audio",
        metadata={"help": "folder the archive is downloaded to and extracted into"},
    )
    filepath: str | None = field(
        default=None,
        metadata={"help": "local data_aishell.tgz; without it the archive is downloaded"},
    )
    annotation_text: str | None = field(
        default="dataset",
        metadata={
            "help": "folder for the train/dev/test manifests (None: target_dir)",
            "aliases": ["manifest_dir"],
        },
    )
    url: str = field(default=DATA_URL, metadata={"help": "download address"})
    md5: str | None = field(
        default=DATA_MD5, metadata={"help": "expected MD5 of the archive; none skips the check"}
    )
    timeout: float = field(
        default=10.0, metadata={"help": "network timeout in seconds (fail fast offline)"}
    )
    keep_archives: bool = field(
        default=False,
        metadata={"help": "keep the per-speaker .tar.gz files after extracting them"},
    )
    overwrite: bool = field(
        default=False, metadata={"help": "rewrite the manifests even if they exist"}
    )
    language: str = field(default="zh", metadata={"help": "language code of every record"})


@dataclass(frozen=True)
class AishellResult:
    """What :func:`prepare_aishell` produced.

    Attributes:
        manifests: split name to manifest path.
        utterances: split name to number of records written.
        untranscribed: split name to number of wavs without a transcript line (left out).
        unused_transcripts: transcript lines whose wav was not found.
        skipped: the steps skipped because an earlier run finished them.
    """

    manifests: dict[str, str]
    utterances: dict[str, int]
    untranscribed: dict[str, int]
    unused_transcripts: int
    skipped: tuple[str, ...] = ()


def download(url: str, dest: str | os.PathLike, md5: str | None, timeout: float = 10.0) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with HTTP Range.

    Args:
        url: the address.
        dest: the final file; a complete, MD5-verified ``dest`` is reused as is.
        md5: the expected digest, or ``None`` to skip the check.
        timeout: socket timeout in seconds, kept short so that an offline machine fails
            at once.

    Returns:
        the path of the verified file.

    Raises:
        DownloadError: the server cannot be reached or the transfer broke off.
        ValueError: the downloaded file's MD5 is wrong (the partial file is deleted).
    """
    dest = Path(dest)
    if dest.is_file():
        check_md5(dest, md5)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    hint = (
        f"Without network access, download {url} (md5 {md5}) elsewhere and pass "
        f"--filepath=/path/to/{dest.name}"
    )
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as exc:
        if not (exc.code == 416 and offset):  # 416: the partial file is already complete
            raise DownloadError(
                f"cannot download {url}: HTTP {exc.code} {exc.reason}. {hint}"
            ) from exc
        response = None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download {url}: {reason}. {hint}") from exc
    if response is not None:
        with response:
            if offset and response.status != 206:  # the server ignored Range: start over
                logger.info("Server does not resume downloads; restarting %s", dest.name)
                offset = 0
            _copy_body(response, part, offset, url)
    try:
        check_md5(part, md5)
    except ValueError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest


def _copy_body(response, part: Path, offset: int, url: str) -> None:
    length = response.headers.get("Content-Length")
    total = int(length) + offset if length else None
    if offset:
        logger.info("Resuming %s at %.1f MB", part.name, offset / 1e6)
    with (
        open(part, "ab" if offset else "wb") as f,
        tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name) as bar,
    ):
        try:
            for chunk in iter(lambda: response.read(_DOWNLOAD_CHUNK_BYTES), b""):
                f.write(chunk)
                bar.update(len(chunk))
        except OSError as exc:
            raise DownloadError(
                f"download of {url} broke off ({exc}); run the command again to resume"
            ) from exc


def _obtain_archive(config: AishellConfig, target: Path) -> Path:
    if config.filepath:
        archive = Path(config.filepath).expanduser()
        if not archive.is_file():
            raise FileNotFoundError(f"--filepath: {archive} does not exist")
        check_md5(archive, config.md5)
        return archive
    return download(config.url, target / ARCHIVE_NAME, config.md5, config.timeout)


def _extract_speaker_archives(wav_dir: Path, keep: bool) -> int:
    """Extract ``wav_dir/*.tar.gz`` in place; return how many were extracted this time."""
    archives = sorted(wav_dir.glob("*.tar.gz"))
    extracted = 0
    for archive in tqdm(archives, desc="speaker archives", unit="archive"):
        marker = wav_dir / f".{archive.name}.done"
        if not marker_done(marker):
            extract_tar(archive, wav_dir)
            mark_done(marker)
            extracted += 1
        if not keep:
            archive.unlink()
    return extracted


def read_transcript(path: str | os.PathLike) -> dict[str, str]:
    """Read ``aishell_transcript_v0.8.txt`` into utterance id -> sentence.

    The transcript separates words with spaces (``BAC009S0002W0122 而对 楼市 ...``);
    they are removed, since Mandarin labels carry no spaces.

    Args:
        path: the transcript file.

    Returns:
        a mapping from utterance id to its sentence, lines without text left out.
    """
    transcripts: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split(maxsplit=1)
            if not parts:
                continue
            text = "".join(parts[1].split()) if len(parts) == 2 else ""
            if not text:
                logger.warning("%s:%d: %s has no text; left out", path, lineno, parts[0])
                continue
            transcripts[parts[0]] = text
    return transcripts


def _split_records(
    split_dir: Path, transcripts: dict[str, str], language: str
) -> tuple[list[Record], list[str], set[str]]:
    """Records of one split, the untranscribed ids, and the ids used."""
    records, missing, used = [], [], set()
    wavs = sorted(split_dir.rglob("*.wav"))
    for wav in tqdm(wavs, desc=f"durations {split_dir.name}", unit="file"):
        text = transcripts.get(wav.stem)
        if text is None:
            missing.append(wav.stem)
            continue
        used.add(wav.stem)
        duration = round(audio_duration_s(wav), 3)
        records.append(
            Record(
                audio_path=str(wav),
                sentence=text,
                duration=duration,
                sentences=(TimedText(0.0, duration, text),),
                language=language,
            )
        )
    return records, missing, used


def _write_manifests(data_dir: Path, out_dir: Path, language: str) -> AishellResult:
    transcripts = read_transcript(data_dir.parent / TRANSCRIPT)
    manifests, utterances, untranscribed, used = {}, {}, {}, set()
    for split in SPLITS:
        split_dir = data_dir / "wav" / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir} is missing: is this the AISHELL-1 archive?")
        records, missing, split_used = _split_records(split_dir, transcripts, language)
        used |= split_used
        path = out_dir / f"{split}.jsonl"
        utterances[split] = write_manifest(records, path)
        manifests[split] = str(path)
        untranscribed[split] = len(missing)
        if missing:
            logger.warning(
                "%s: %d wav files have no transcript and were left out (e.g. %s)",
                split,
                len(missing),
                ", ".join(missing[:_SHOW_IDS]),
            )
        logger.info("Wrote %d records to %s", utterances[split], path)
    unused = sorted(set(transcripts) - used)
    if unused:
        logger.warning(
            "%d transcript lines have no wav (e.g. %s)", len(unused), ", ".join(unused[:_SHOW_IDS])
        )
    return AishellResult(manifests, utterances, untranscribed, len(unused))


def _load_summary(path: Path) -> AishellResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        result = AishellResult(**data)
    except (OSError, ValueError, TypeError):
        return None
    if all(Path(p).is_file() for p in result.manifests.values()):
        return result
    return None


def _save_summary(result: AishellResult, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    data = {
        "manifests": result.manifests,
        "utterances": result.utterances,
        "untranscribed": result.untranscribed,
        "unused_transcripts": result.unused_transcripts,
    }
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def prepare_aishell(config: AishellConfig) -> AishellResult:
    """Download (or take), extract and index AISHELL-1 into train/dev/test manifests.

    Args:
        config: the recipe's options.

    Returns:
        the manifests written and the counts, including untranscribed wavs.

    Raises:
        DownloadError: no ``filepath`` was given and the download failed.
        FileNotFoundError: ``filepath`` or an expected folder of the archive is missing.
        ValueError: an MD5 mismatch or an unreadable archive or wav.
    """
    target = Path(config.target_dir).expanduser()
    out_dir = Path(config.annotation_text).expanduser() if config.annotation_text else target
    data_dir = target / "data_aishell"
    skipped = []
    if marker_done(data_dir / ".extracted"):
        logger.info("%s is already extracted; skipping the archive", data_dir)
        skipped.append("extract")
    else:
        archive = _obtain_archive(config, target)
        logger.info("Extracting %s into %s", archive, target)
        extract_tar(archive, target)
        mark_done(data_dir / ".extracted")
    wav_dir = data_dir / "wav"
    if not wav_dir.is_dir():
        raise FileNotFoundError(
            f"{wav_dir} is missing: is {config.filepath or 'the archive'} AISHELL-1?"
        )
    if not _extract_speaker_archives(wav_dir, config.keep_archives):
        skipped.append("speaker archives")
    summary_path = out_dir / SUMMARY_NAME
    previous = None if config.overwrite else _load_summary(summary_path)
    if previous is not None:
        logger.info("Manifests in %s are up to date; skipping (--overwrite redoes them)", out_dir)
        result = previous
        skipped.append("manifests")
    else:
        result = _write_manifests(data_dir, out_dir, config.language)
        _save_summary(result, summary_path)
    return AishellResult(
        result.manifests,
        result.utterances,
        result.untranscribed,
        result.unused_transcripts,
        tuple(skipped),
    )
