"""The stage-2 latent cache: z_clean = E(x) of every training image, computed once with the frozen
(EMA) encoder and stored as a few memory-mapped float32 shards with per-channel statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ul.artifacts.latent_stats import ChannelStats
from ul.common.distributed import Dist
from ul.common.images import from_uint8
from ul.common.shards import ShardReader, ShardWriter


@torch.no_grad()
def write(
    model, images: ShardReader, out_dir: str | Path, batch_size: int = 256, device="cpu", d: Dist = Dist()
) -> dict | None:
    """z_clean = model.encode(x) of every image of `images`, with per-channel statistics. Under
    torchrun (`d`) each rank encodes every world-th batch and rank 0 gathers them round by round
    (one batch per rank in memory) and writes them in order: the bytes one process writes. The
    statistics on rank 0; None on the others."""
    writer = ShardWriter(out_dir, shard_size=50_000, prefix="latents") if d.main else None
    stats = ChannelStats()
    batches = -(-len(images) // batch_size)
    for first in tqdm(range(0, batches, d.world), desc="cache_latents", unit="batch", disable=not d.main or None):
        i = first + d.rank
        mine = {}
        if i < batches:
            x = images[np.arange(i * batch_size, min((i + 1) * batch_size, len(images)))]
            mine[i] = model.encode(from_uint8(x).to(device)).cpu()
        every = d.gather(mine)
        for k in sorted(every or {}):
            writer.add(every[k].numpy().astype(np.float32))
            stats.add(every[k])
    if writer is None:
        return None
    result = {"count": len(images), **stats.result()}
    writer.close(result)
    return result


def read(folder: str | Path) -> ShardReader:
    return ShardReader(folder)
