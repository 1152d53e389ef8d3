"""The stage-2 latent cache: z_clean = E(x) of every training image, computed once with the frozen
(EMA) encoder and stored as a few memory-mapped float32 shards with per-channel statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ul.common.images import from_uint8
from ul.common.shards import ShardReader, ShardWriter


@torch.no_grad()
def write(model, images: ShardReader, out_dir: str | Path, batch_size: int = 256, device="cpu") -> dict:
    """z_clean = model.encode(x) of every image of `images`, with per-channel statistics."""
    writer = ShardWriter(out_dir, shard_size=50_000, prefix="latents")
    s1 = s2 = 0.0
    n = 0
    for batch in tqdm(
        images.iter_batches(batch_size), total=-(-len(images) // batch_size), desc="cache_latents", unit="batch"
    ):
        z = model.encode(from_uint8(batch).to(device)).cpu()
        writer.add(z.numpy().astype(np.float32))
        rest = (0, *range(2, z.dim()))  # every axis but the channel's (images and video)
        s1 = s1 + z.double().sum(rest)
        s2 = s2 + z.double().pow(2).sum(rest)
        n += z.numel() // z.shape[1]
    mean = s1 / n
    std = (s2 / n - mean**2).clamp_min(0).sqrt()
    stats = {
        "count": len(images),
        "shape": list(z.shape[1:]),
        "mean_per_channel": mean.tolist(),
        "std_per_channel": std.tolist(),
        "std": float(std.pow(2).mean().sqrt()),
    }
    writer.close(stats)
    return stats


def read(folder: str | Path) -> ShardReader:
    return ShardReader(folder)
