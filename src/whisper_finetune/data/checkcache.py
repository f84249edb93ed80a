"""The audio checks of a manifest, cached beside it: decode the corpus once, not once per rank.

``prepare validate`` decodes every file of a manifest (in parallel processes) and writes
``<manifest>.checked.json`` next to it: for each record, the seconds of audio it stands
for, or why its audio cannot be used. ``finetune`` (:func:`prepare_records`) reads the
cache instead of decoding the corpus again in each of its processes, as long as the
manifest is unchanged: same size and same BLAKE2 digest (hashing a 200 MB manifest of a
million records takes a fraction of a second). Edit
the manifest and the cache is ignored (and rewritten by the next ``validate``). The
audio files themselves are not fingerprinted: after replacing audio files, validate
again.

Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

SUFFIX = ".checked.json"
VERSION = 2  # 2: records gained 'prompt' (a non-string one is an error)
_CHUNK = 1 << 20
_HINT_RECORDS = 10_000  # from this many records, say how to avoid decoding them per rank


def cache_path(manifest: str | os.PathLike) -> Path:
    """Where the cache of ``manifest`` lives: ``train.jsonl`` -> ``train.jsonl.checked.json``."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.name + SUFFIX)


def fingerprint(manifest: str | os.PathLike) -> dict:
    """Size, modification time and BLAKE2b digest of a manifest (about 1 s per GB)."""
    st = os.stat(manifest)
    digest = hashlib.blake2b(digest_size=16)
    with open(manifest, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": digest.hexdigest()}


def record_key(origin: str, manifest: str | os.PathLike) -> str | None:
    """A record's place in its manifest (``":12"``, ``": item 3"``) from its origin."""
    prefix = str(manifest)
    return origin[len(prefix) :] if origin.startswith(prefix) else None


def write_cache(
    manifest: str | os.PathLike,
    print_: dict,
    audio: dict[str, float | str],
    *,
    decoded: bool,
    malformed: int,
) -> Path:
    """Write the cache of ``manifest`` atomically.

    Args:
        manifest: the manifest checked.
        print_: its :func:`fingerprint`, taken before the check started.
        audio: record key -> seconds of audio, or the reason its audio is unusable.
        decoded: whether every file was decoded (not only its header read).
        malformed: records that are not well-formed (their fields, not their audio).
    """
    path = cache_path(manifest)
    data = {
        "version": VERSION,
        "manifest": Path(manifest).name,
        "fingerprint": print_,
        "decoded": decoded,
        "malformed": malformed,
        "keys": list(audio),
        "audio": list(audio.values()),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


_last: list = [None, None, None]  # (which file, its fingerprint, the cache): the last one read


class CheckCache:
    """A manifest's cache, read back; see the module docstring.

    Attributes:
        decoded: whether ``validate`` decoded every file.
        malformed: records that failed to parse when it ran.
    """

    def __init__(self, data: dict, manifest: str | os.PathLike = ""):
        self.manifest = str(manifest)
        self.decoded = bool(data.get("decoded"))
        self.malformed = int(data.get("malformed", 0))
        self._audio = dict(zip(data["keys"], data["audio"], strict=True))

    def __len__(self) -> int:
        return len(self._audio)

    def seconds(self, record) -> float | None:
        """Seconds of audio of a record, or ``None`` if the cache does not know it.

        Raises:
            AudioError: the audio was unusable when ``validate`` ran (the message says why).
        """
        found = self.audio(record.origin)
        if isinstance(found, str):
            from whisper_finetune.data.codec import AudioError

            raise AudioError(found)
        return found

    def audio(self, origin: str) -> float | str | None:
        """Seconds of audio of the record from ``origin`` (``file:line``), the reason it
        has none, or ``None`` if the cache does not know it."""
        key = record_key(origin, self.manifest)
        return None if key is None else self._audio.get(key)

    @classmethod
    def load(cls, manifest: str | os.PathLike) -> CheckCache | None:
        """The cache of ``manifest`` if it exists and the manifest has not changed since
        (its digest is compared on every call; the parsed cache is kept for the next)."""
        path = cache_path(manifest)
        if not path.is_file():
            return None
        try:
            st = path.stat()
            memo = (os.path.abspath(path), st.st_size, st.st_mtime_ns, str(manifest))
            if _last[0] == memo:  # opening the manifest and preparing its records both ask
                print_, cache = _last[1], _last[2]
            else:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") != VERSION:
                    return None
                print_, cache = data["fingerprint"], cls(data, manifest)
                _last[:] = [memo, print_, cache]
            if os.stat(manifest).st_size != print_["size"] or (
                fingerprint(manifest)["blake2b"] != print_["blake2b"]
            ):
                logger.info("%s changed since %s was written; not using it", manifest, path)
                return None
            return cache
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring the unreadable check cache %s: %s", path, exc)
            return None


def cache_for(records) -> CheckCache | None:
    """The decoded audio checks cached for the manifest ``records`` were read from (a
    :class:`~whisper_finetune.data.manifest.Manifest` or a view of one), if still valid."""
    path = getattr(records, "path", None)
    cache = CheckCache.load(path) if path is not None else None
    if cache is None or not cache.decoded:
        if path is not None and len(records) >= _HINT_RECORDS:
            logger.info(
                "decoding the %d records of %s to check them; `whisper-finetune prepare "
                "validate %s` does it once, in parallel, for every later run and rank",
                len(records),
                path,
                path,
            )
        return None
    logger.info("using the audio checks `prepare validate` cached for %s", path)
    return cache
