"""An index of the non-blank lines of a text file: a few bytes per line, lines read on demand.

A JSON Lines manifest of a million utterances is some 200 MB of text; its Python records
would take about a gigabyte in every training process. :class:`LineIndex` keeps only
where each line starts (``int64``) and how long it is (``uint32``), 12 bytes a line, plus
the line numbers when the file has blank lines (another 8). Lines are read back with
``os.pread``, so any number of processes and threads can share one index; it pickles
without its file handle (DataLoader workers reopen the file).

This module knows bytes, not JSON; it imports only numpy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np

_CHUNK = 1 << 24  # bytes scanned at a time when indexing (16 MiB)
_WHITESPACE = b" \t\r\n\f\v"
BOM = b"\xef\xbb\xbf"


class LineIndex:
    """Offsets of the non-blank lines of ``path``.

    Attributes:
        path: the file.
        size: its size in bytes when indexed.
        mtime_ns: its modification time when indexed.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        st = os.stat(self.path)
        self.size, self.mtime_ns = st.st_size, st.st_mtime_ns
        self.starts, self.lengths, self.linenos = _scan(self.path)
        self._fd: int | None = None

    @classmethod
    def _view(cls, parent: LineIndex, selection) -> LineIndex:
        view = cls.__new__(cls)
        view.path, view.size, view.mtime_ns = parent.path, parent.size, parent.mtime_ns
        view.starts = parent.starts[selection]
        view.lengths = parent.lengths[selection]
        view.linenos = parent.line_numbers()[selection]
        view._fd = None
        return view

    def select(self, selection) -> LineIndex:
        """A new index over some of these lines (a slice or an array of positions)."""
        return LineIndex._view(self, selection)

    def __len__(self) -> int:
        return int(self.starts.size)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fd"] = None
        return state

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def nbytes(self) -> int:
        """Memory the index holds, in bytes."""
        extra = 0 if self.linenos is None else self.linenos.nbytes
        return self.starts.nbytes + self.lengths.nbytes + extra

    def line_number(self, i: int) -> int:
        """1-based line number of the ``i``-th non-blank line."""
        return int(self.linenos[i]) if self.linenos is not None else i + 1

    def line_numbers(self) -> np.ndarray:
        if self.linenos is not None:
            return self.linenos
        return np.arange(1, len(self) + 1, dtype=np.int64)

    def read(self, i: int) -> bytes:
        """The bytes of the ``i``-th non-blank line, without its line break."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        n = int(self.lengths[i])
        data = os.pread(self._fd, n, int(self.starts[i]))
        if len(data) != n:
            raise OSError(
                f"{self.path} changed while it was being read (line {self.line_number(i)})"
            )
        return data

    def iter_lines(self) -> Iterator[tuple[int, bytes]]:
        """``(line number, bytes)`` of every indexed line, in order, read sequentially."""
        with open(self.path, "rb") as f:
            pos = 0
            for i in range(len(self)):
                start, n = int(self.starts[i]), int(self.lengths[i])
                if start != pos:
                    f.seek(start)
                data = f.read(n)
                pos = start + n
                yield self.line_number(i), data


def _scan(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Starts, lengths (without ``\\r\\n``) and, if any line is blank, line numbers."""
    starts, ends = [], []
    with open(path, "rb") as f:
        head = f.read(len(BOM))
        offset = len(BOM) if head == BOM else 0
        f.seek(offset)
        line_start = offset
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            buf = np.frombuffer(chunk, dtype=np.uint8)
            breaks = np.flatnonzero(buf == 10) + offset
            if breaks.size:
                starts.append(np.concatenate(([line_start], breaks[:-1] + 1)))
                ends.append(breaks)
                line_start = int(breaks[-1]) + 1
            offset += len(chunk)
        if line_start < offset:  # a last line without a line break
            starts.append(np.array([line_start]))
            ends.append(np.array([offset]))
    if not starts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros(0, dtype=np.uint32), None
    start = np.concatenate(starts).astype(np.int64)
    end = np.concatenate(ends).astype(np.int64)
    keep = np.ones(start.size, dtype=bool)
    length = end - start
    data = np.memmap(path, dtype=np.uint8, mode="r")
    nonempty = length > 0
    first = np.full(start.size, 32, dtype=np.uint8)
    first[nonempty] = data[start[nonempty]]
    # drop the "\r" of Windows line breaks
    length[nonempty] -= data[end[nonempty] - 1] == 13
    del data
    # a line is blank only if it starts with whitespace: check those one by one
    suspects = np.flatnonzero(np.isin(first, np.frombuffer(_WHITESPACE, dtype=np.uint8)))
    if suspects.size:
        with open(path, "rb") as f:
            for i in suspects:
                f.seek(int(start[i]))
                if not f.read(int(length[i])).strip():
                    keep[i] = False
    linenos = None if keep.all() else (np.flatnonzero(keep) + 1).astype(np.int64)
    return start[keep], length[keep].astype(np.uint32), linenos
