"""Evaluation and transcription across processes and machines (``torchrun``).

Under ``torchrun --nproc_per_node=N`` (and ``--nnodes`` for several machines) the
environment names each process's ``RANK`` out of ``WORLD_SIZE``. The records are dealt
out by rank (record ``i`` goes to rank ``i % WORLD_SIZE``, so a manifest sorted by
length still balances), each rank transcribes its share and streams its per-utterance
results to its own file, and rank 0 gathers every rank's results over a gloo process
group (no shared filesystem is needed) and writes one report, in manifest order. The
scores are sums over utterances, so the merged score equals a single-process run's.

On CPU each process takes its share of the cores (the cores this machine gives the job,
divided by the processes on it), unless ``--cpu_threads`` says otherwise; with CUDA each
process uses the GPU of its ``LOCAL_RANK``.

A rank that fails still joins the final exchange with its error, so every rank stops
with the same message (naming where each rank's finished results are) instead of
waiting for a rank that is gone.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# a fast rank waits at the final exchange for the slowest one: hours on a big corpus
_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world > 1

    @classmethod
    def from_env(cls) -> Dist:
        env = os.environ
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
        if not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
        return cls(rank, world, local_rank, local_world)

    def suffix(self) -> str:
        """``rankR-of-W``: names this rank's partial files."""
        return f"rank{self.rank}-of-{self.world}"


def start(device: str = "auto") -> Dist:
    """Join the torchrun job, if there is one; pin this rank's GPU.

    Call before any CUDA use: with CUDA each rank sees only the GPU of its local rank.
    """
    dist = Dist.from_env()
    if not dist.active:
        return dist
    import torch.distributed as td

    if device != "cpu":
        _pin_gpu(dist.local_rank)
    if not td.is_initialized():
        td.init_process_group("gloo", timeout=_TIMEOUT)
    logger.info(
        "rank %d of %d (local %d of %d)", dist.rank, dist.world, dist.local_rank, dist.local_world
    )
    return dist


def _pin_gpu(local_rank: int) -> None:
    """Show this process only the GPU of its local rank (round robin when fewer GPUs).

    Done through ``CUDA_VISIBLE_DEVICES`` before anything asks CUDA about devices (the
    CUDA runtime reads it once), so both backends simply use "cuda". The GPUs are
    counted from ``/dev/nvidiaN`` for the same reason.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [i.strip() for i in visible.split(",") if i.strip()]
    else:
        import glob

        ids = [str(i) for i in range(len(glob.glob("/dev/nvidia[0-9]*")))]
    if ids:  # none: CPU only, or every GPU hidden on purpose
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[local_rank % len(ids)]


def cpu_threads(dist: Dist, requested: int = 0) -> int:
    """Threads for this process: ``requested`` if given, else its share of the cores.

    A single process keeps the library default (0). Several processes on one machine
    each take ``cores // processes_on_this_machine`` (at least 1), so N processes do not
    each start a thread per core and fight over them.
    """
    if requested > 0 or not dist.active:
        return requested
    from whisper_finetune.data.workers import available_cpus

    share = max(1, available_cpus() // max(1, dist.local_world))
    import torch

    torch.set_num_threads(share)
    return share


def shard(n: int, dist: Dist) -> list[int]:
    """The indices of ``n`` items that this rank handles: ``rank, rank + world, ...``."""
    return list(range(dist.rank, n, dist.world))


def broadcast(obj, dist: Dist):
    """Rank 0's ``obj`` on every rank (a no-op for one process)."""
    if not dist.active:
        return obj
    import torch.distributed as td

    box = [obj if dist.is_main else None]
    td.broadcast_object_list(box, src=0)
    return box[0]


def gather(results: Sequence, error: str | None, dist: Dist, extra=None) -> tuple[list, list]:
    """Every rank's results on rank 0, in item order, and every rank's ``extra``.

    Args:
        results: this rank's results, in the order of :func:`shard`'s indices.
        error: this rank's failure (its message), or ``None``.
        extra: one more value per rank (e.g. its transcription time).

    Returns:
        ``(results, extras)`` on rank 0; ``([], [])`` on the other ranks.

    Raises:
        RuntimeError: on every rank, when any rank reported an error.
    """
    if not dist.active:
        if error:
            raise RuntimeError(error)
        return list(results), [extra]
    import torch.distributed as td

    errors: list = [None] * dist.world
    td.all_gather_object(errors, error)
    failed = [(r, e) for r, e in enumerate(errors) if e]
    if failed:
        lines = "; ".join(f"rank {r}: {e}" for r, e in failed)
        raise RuntimeError(f"{len(failed)} of {dist.world} ranks failed: {lines}")
    parts: list | None = [None] * dist.world if dist.is_main else None
    td.gather_object((list(results), extra), parts, dst=0)
    if not dist.is_main:
        return [], []
    n = sum(len(p[0]) for p in parts)
    merged: list = [None] * n
    for rank, (part, _) in enumerate(parts):
        for k, item in enumerate(part):
            merged[rank + k * dist.world] = item
    return merged, [p[1] for p in parts]


def barrier(dist: Dist) -> None:
    if dist.active:
        import torch.distributed as td

        td.barrier()


def finish(dist: Dist) -> None:
    """Leave the process group (after the last exchange)."""
    if dist.active:
        import torch.distributed as td

        if td.is_initialized():
            td.destroy_process_group()
