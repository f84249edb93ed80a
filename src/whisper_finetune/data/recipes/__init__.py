"""Dataset recipes: turn public corpora or a user's folder into training manifests.

Each recipe module takes a frozen config dataclass and returns a small result dataclass:

- :mod:`whisper_finetune.data.recipes.aishell`: AISHELL-1 (OpenSLR 33), download or local tgz.
- :mod:`whisper_finetune.data.recipes.wenetspeech`: WenetSpeech metadata into <=30 s
  timestamped samples.
- :mod:`whisper_finetune.data.recipes.folder`: ``metadata.csv`` or ``.txt`` sidecars into a
  deterministic train/test split.
- :mod:`whisper_finetune.data.recipes.validate`: check a manifest before training.

This package module holds the helpers they share: checksums, safe tar extraction, step
markers and audio durations. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
from pathlib import Path

logger = logging.getLogger(__name__)

# extensions the folder recipe picks up; decoding goes through whisper_finetune.data.audio
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".webm", ".aac", ".wma")

_CHUNK_BYTES = 1 << 20


def md5sum(path: str | os.PathLike) -> str:
    """The hex MD5 digest of a file, read in 1 MiB chunks.

    Args:
        path: the file to hash.

    Returns:
        the 32-character lowercase hex digest.
    """
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: str | os.PathLike, expected: str | None) -> None:
    """Compare a file's MD5 with the expected digest; skip when none is known.

    Args:
        path: the file to check.
        expected: the published digest, or ``None`` to skip the check.

    Raises:
        ValueError: the digests differ (a truncated or corrupt download).
    """
    if not expected:
        return
    logger.info("Checking the MD5 of %s", path)
    actual = md5sum(path)
    if actual.lower() != expected.lower():
        raise ValueError(
            f"MD5 mismatch for {path}: expected {expected}, got {actual}. The file is "
            "incomplete or corrupt; download it again (or pass --md5=none to skip the check)."
        )


def marker_done(marker: Path) -> bool:
    """Whether a step's marker file exists (the step finished on an earlier run)."""
    return marker.is_file()


def mark_done(marker: Path) -> None:
    """Create a step's marker file, after the step completed."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("done\n", encoding="utf-8")


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    target = (dest / member.name).resolve()
    if not target.is_relative_to(dest) or member.issym() or member.islnk():
        raise ValueError(f"refusing to extract {member.name!r}: it points outside {dest}")


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """Extract a (possibly compressed) tar archive safely into ``dest``.

    Members that would land outside ``dest`` (absolute paths, ``..``, links) are refused,
    using tarfile's ``data`` filter where this Python has it.

    Args:
        archive: the ``.tar``/``.tar.gz``/``.tgz`` file.
        dest: the folder to extract into (created if needed).

    Returns:
        the names of the regular files extracted.

    Raises:
        ValueError: the archive is unreadable or has an unsafe member.
    """
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # Python < 3.10.12: check the members ourselves
                for m in members:
                    _check_member(m, dest)
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"cannot extract {archive}: {exc}") from exc
    return [m.name for m in members if m.isfile()]


def audio_duration_s(path: str | os.PathLike) -> float:
    """The duration of an audio file in seconds, from its header where possible.

    Args:
        path: the audio file.

    Returns:
        the duration in seconds.

    Raises:
        ValueError: the file cannot be read as audio (``AudioError`` from
            :mod:`whisper_finetune.data.audio`).
    """
    from whisper_finetune.data.audio import audio_duration

    return float(audio_duration(path))


def decoded_duration_s(path: str | os.PathLike) -> float:
    """The duration of an audio file in seconds, by decoding every sample.

    Slower than :func:`audio_duration_s` but proves the whole file decodes.

    Args:
        path: the audio file.

    Returns:
        the number of decoded 16 kHz samples divided by the sample rate.

    Raises:
        ValueError: the file does not decode.
    """
    from whisper_finetune.data.audio import SAMPLE_RATE, load_audio

    return len(load_audio(path)) / float(SAMPLE_RATE)
