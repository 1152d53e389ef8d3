"""torchrun support: the training loops, latent caching and evaluation run unchanged under
torchrun, on one machine or several (gloo on CPU, NCCL on GPU; ul.common.launch starts it); rank 0
logs, checkpoints, gathers and writes the outputs. Without torchrun, world size is 1."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

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

    def gather(self, mine: dict) -> dict | None:
        """Every rank's {index: result}, merged on rank 0; None on the others."""
        if self.world == 1:
            return mine
        parts = [None] * self.world if self.main else None
        dist.gather_object(mine, parts, dst=0)
        return {k: v for part in parts for k, v in part.items()} if self.main else None

    def newest(self, ck: dict | None) -> dict | None:
        """The checkpoint with the most steps that any rank holds, on every rank: each machine reads
        its own disk, and after a restart the rank that wrote the last one may sit elsewhere."""
        if self.world == 1:
            return ck
        steps: list = [None] * self.world
        dist.all_gather_object(steps, -1 if ck is None else ck["step"])
        src = max(range(self.world), key=lambda r: (steps[r], -r))
        if steps[src] < 0:
            return None
        box = [ck if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]


def is_main() -> bool:
    """Whether this process writes a stage's outputs: rank 0 of torchrun's, or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def init(device: torch.device, timeout_s: float = 1800.0) -> Dist:
    """This process's place in torchrun's group; a collective waits at most `timeout_s` for a rank
    (a machine that is gone), then fails, which torchrun's agent answers with a restart."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return Dist(dist.get_rank(), dist.get_world_size())


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
