"""Training across processes and machines: ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous (``MASTER_ADDR``/``MASTER_PORT``); :func:`init_from_env` joins the process group with the backend
that fits the device (NCCL on GPUs, gloo on CPUs) and places the process on ``cuda:LOCAL_RANK`` or the CPU.

Without ``torchrun`` (no ``WORLD_SIZE``) everything runs in one process and every collective is the identity.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DistInfo", "init_from_env", "shutdown", "all_reduce_sum", "broadcast", "barrier", "mix_seed"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place: its global ``rank`` of ``world`` processes, ``local_rank`` on its machine, device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group is up (more than one process)."""
        return self.world > 1 and dist.is_available() and dist.is_initialized()


def init_from_env(device: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join ``torchrun``'s process group if there is one; the device is ``device`` (e.g. ``"cpu"``) or, by
    default, ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU. Backend: NCCL on CUDA, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    want = device or os.environ.get("QAMREC_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(f"cuda:{local}" if want == "cuda" else want)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank, world, local, dev)


def shutdown(info: DistInfo) -> None:
    """Leave the process group (if this process joined one)."""
    if info.distributed:
        dist.destroy_process_group()


def all_reduce_sum(t: Tensor, info: DistInfo) -> Tensor:
    """``t`` summed over every rank, in place (identity in one process)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast(t: Tensor, info: DistInfo, src: int = 0) -> Tensor:
    """``t`` of rank ``src`` copied into every rank's ``t``, in place."""
    if info.distributed:
        dist.broadcast(t, src=src)
    return t


def barrier(info: DistInfo) -> None:
    """Wait for every rank."""
    if info.distributed:
        dist.barrier()


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, rank, batch...), different for every tuple in practice
    (SplitMix64 over the parts)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF
