"""The stage-2 latent cache: z_clean = E(x) of every training image, computed once with the frozen
(EMA) encoder and stored as a few memory-mapped float32 shards with per-channel statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ul.artifacts.latent_stats import ChannelStats
from ul.common.images import from_uint8
from ul.common.shards import ShardReader, ShardWriter


@torch.no_grad()
def write(model, images: ShardReader, out_dir: str | Path, batch_size: int = 256, device="cpu") -> dict:
    """z_clean = model.encode(x) of every image of `images`, with per-channel statistics."""
    writer = ShardWriter(out_dir, shard_size=50_000, prefix="latents")
    stats = ChannelStats()
    for batch in tqdm(
        images.iter_batches(batch_size), total=-(-len(images) // batch_size), desc="cache_latents", unit="batch"
    ):
        z = model.encode(from_uint8(batch).to(device)).cpu()
        writer.add(z.numpy().astype(np.float32))
        stats.add(z)
    result = {"count": len(images), **stats.result()}
    writer.close(result)
    return result


def read(folder: str | Path) -> ShardReader:
    return ShardReader(folder)
