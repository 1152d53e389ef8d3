"""torchrun support: the training loops run unchanged under `torchrun --nproc_per_node=N`
(gloo on CPU, NCCL on GPU); rank 0 logs and checkpoints. Without torchrun, world size is 1."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def slice(self, batch: int) -> slice:
        """This rank's rows of a global batch (the global batch must divide evenly)."""
        if batch % self.world:
            raise ValueError(f"batch_size={batch} must be divisible by the world size {self.world}")
        n = batch // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            x = x.clone()
            dist.all_reduce(x)
            x /= self.world
        return x


def init(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
