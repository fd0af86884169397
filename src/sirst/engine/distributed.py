"""PyTorch DDP plumbing: process-group setup from torchrun's environment, and small collectives.

Under ``torchrun --nproc-per-node N -m sirst train ...`` every process reads ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` from the environment (``env://``).
Without them (or with ``WORLD_SIZE=1``) training runs in one process and nothing here communicates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and shows progress bars."""
        return self.rank == 0


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group described by torchrun's variables, if any.

    Uses NCCL for CUDA and gloo for CPU. On CUDA each process takes GPU ``LOCAL_RANK``. Returns the
    process's :class:`DistInfo` and the ``torch.device`` it should train on.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{device}: CUDA was requested but torch.cuda.is_available() is False")
    if world_size <= 1:
        return DistInfo(), torch.device(device)
    info = DistInfo(
        rank=int(os.environ["RANK"]), world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )
    if kind == "cuda":
        torch.cuda.set_device(info.local_rank)
        dev = torch.device("cuda", info.local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo", init_method="env://")
    return info, dev


def cleanup_distributed() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_(t: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce of a tensor (``op``: ``"sum"``, ``"min"`` or ``"max"``); returns it."""
    if info.enabled:
        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        dist.all_reduce(t, op=ops[op])
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def sync_buffers_(model: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, in place.

    DDP broadcasts buffers at the *start* of each forward, so after the last training step every rank
    holds its own running statistics; evaluation and checkpoints must all use rank 0's.
    """
    if not info.enabled:
        return
    for buf in model.buffers():
        dist.broadcast(buf.data, src=0)
