"""Several processes through ``torchrun`` (DDP): gloo on CPU, NCCL on CUDA.

Choice: only rank 0 talks to the server. It polls the edge feed, fetches items, embeds and
publishes, and broadcasts what it read (feed rows, cursor, new items, the stop decision) to
the other ranks. Every rank therefore trains on the same graph and item table at the same
step, with no cursor races and one client load on the server; the ranks differ only in the
batches they draw (seeded by rank), and DDP averages their gradients. Loss statistics
(VICReg variance/covariance, BarlowTwins batch norm) are per rank, over its local batch.

Launch: ``torchrun --nproc-per-node 2 -m trainer --server URL --token T --project P``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled; fine for feed pages and small tables)."""
        if not self.distributed:
            return obj
        box: list[object] = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if preference == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(preference)


def setup(device_preference: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, device)


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP around ``model`` when distributed; the model itself otherwise."""
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
