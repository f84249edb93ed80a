"""Read a WAV file's RIFF header to find a file cut short (a copy or download that stopped).

libsndfile and FFmpeg both read a truncated WAV without an error: they return the samples
that are there, so 8.4 s promised by the header and 3.1 s present is transcribed in part,
silently. :func:`wav_truncation` compares the ``data`` chunk's declared size with the
bytes the file holds. Standard library only.
"""

from __future__ import annotations

import os
import struct

_HEADER_BYTES = 1 << 16  # chunks before "data" (fmt, LIST, fact, ...) are small
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the size unset


def wav_truncation(path: str | os.PathLike) -> tuple[float, float] | None:
    """``(seconds the header promises, seconds present)`` if a WAV file is truncated.

    Returns ``None`` for a complete file, a file that is not a plain RIFF/WAVE file
    (RF64, other formats: nothing to say), or a header with an unset data size.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate, block = 12, 0, 1
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt " and body + 16 <= len(head):
            byte_rate, block = struct.unpack_from("<IH", head, body + 8)
        elif chunk == b"data":
            if length in _UNKNOWN_SIZES or not byte_rate:
                return None
            present = size - body
            if present >= length or length - present < max(block, 1):
                return None
            present -= present % max(block, 1)
            return length / byte_rate, max(present, 0) / byte_rate
        pos = body + length + (length & 1)  # chunks are padded to an even size
    return None
