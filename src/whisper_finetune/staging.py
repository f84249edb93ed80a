"""Write a folder so that it appears complete or not at all.

Every model folder this package writes (rebuilt, converted, merged, assembled) is built in
a temporary sibling and renamed into place only when finished, so an interrupted run never
leaves a folder that looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_dir(dst: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``dst``; publish it as ``dst`` when the block ends.

    On an exception the temporary folder is removed and ``dst`` is left as it was.

    Args:
        dst: the folder to create.
        replace: when a non-empty ``dst`` exists at publication, swap it out (True), or
            keep it and discard ours (False: for caches that another process may have
            filled first, whose content is complete by construction).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private
        _publish(tmp, dst, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, dst: Path, replace: bool) -> None:
    if not replace and dst.is_dir() and any(dst.iterdir()):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    trash = None
    if dst.exists():
        # move the old folder aside first: there is never a moment without a complete dst
        trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, trash / dst.name)
    os.replace(tmp, dst)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
