"""What a user needs to train their own diffusion model on an autoencoder's latents, measured once
over the training split when the model is exported (config.json's `latents`, the model card,
`ul info`).

For UL the decoder reads z0 = α0·z_clean + σ0·ε, and z_clean is small (std s ≈ 0.08 in the default
run, about σ0): z0 is not unit-variance data. Multiplying z0 by `scale` = 1/√(α0²s² + σ0²) gives it
unit variance; read as a variance-preserving diffusion of unit-variance data z_clean/s, it then
sits at log-SNR λ(0) + 2·ln s (`scaled_logsnr`), not at λ(0). For the KL-VAE the latent is the
posterior mean and `scale` = 1/s, as Stable Diffusion scales its latents.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from ul.common.images import from_uint8
from ul.core.losses import NoiseDraw
from ul.core.model import UnifiedLatents
from ul.core.schedules import alpha_sigma, bits


class ChannelStats:
    """Running per-channel mean and std of N×C×... tensors, in float64."""

    def __init__(self):
        self.s1 = self.s2 = 0.0
        self.n = 0
        self.shape: list[int] = []

    def add(self, z: torch.Tensor) -> None:
        rest = (0, *range(2, z.dim()))  # every axis but the channel's (images and video)
        z = z.detach().double().cpu()
        self.s1 = self.s1 + z.sum(rest)
        self.s2 = self.s2 + z.pow(2).sum(rest)
        self.n += z.numel() // z.shape[1]
        self.shape = list(z.shape[1:])

    def result(self) -> dict:
        mean = self.s1 / self.n
        std = (self.s2 / self.n - mean**2).clamp_min(0).sqrt()
        return {
            "shape": self.shape,
            "mean_per_channel": mean.tolist(),
            "std_per_channel": std.tolist(),
            "std": float(std.pow(2).mean().sqrt()),  # the root-mean-square of the channels' stds
        }


@torch.no_grad()
def rate_nats(model, x: torch.Tensor, z_clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The model's rate of each image in nats: UL's prior bound L_z for one noise draw, or the KL-VAE's KL."""
    if isinstance(model, UnifiedLatents):
        return model.rate_nats(z_clean, NoiseDraw.draw(len(z_clean), model.z_shape, generator).to(z_clean.device))
    return model.rate_nats(x)


BATCH = 64  # fixed, not a parameter: the sums (and so the bits of the statistics) depend on it


@torch.no_grad()
def measure(model, images, device, seed: int, batch_size: int = BATCH, progress: bool = True) -> dict:
    """config.json's `latents` section: z_clean's statistics and the rate over `images` (uint8
    shards, the training split), one prior noise draw per image from `seed`."""
    stats, nats, count = ChannelStats(), 0.0, 0
    gen = torch.Generator().manual_seed(seed)
    total = -(-len(images) // batch_size)
    for batch in tqdm(
        images.iter_batches(batch_size), total=total, desc="latent stats", unit="batch", disable=not progress
    ):
        x = from_uint8(batch).to(device)
        z = model.encode(x)
        stats.add(z)
        nats += float(rate_nats(model, x, z, gen).double().sum())
        count += len(x)
    return section(model, stats.result(), nats / count, count)


def section(model, z_stats: dict, rate_nats_per_image: float, count: int) -> dict:
    """The `latents` section from measured statistics (see the module's docstring for the scale)."""
    s = z_stats["std"]
    rate = bits(rate_nats_per_image, latent_shape=model.z_shape, image_shape=model.x_shape)
    out = {
        "shape": list(model.z_shape),
        "split": "train",
        "count": count,
        "z_clean": z_stats,
        "rate": {k: float(v) for k, v in rate.items()} | {"noise_draws": 1},
    }
    if isinstance(model, UnifiedLatents):
        a0, s0 = (float(v) for v in alpha_sigma(float(model.logsnr0)))
        out |= {
            "decoder_input": "z0 = alpha0 * z_clean + sigma0 * eps (noisy, at logsnr0)",
            "logsnr0": float(model.logsnr0),
            "alpha0": a0,
            "sigma0": s0,
            "scale": 1.0 / math.sqrt(a0**2 * s**2 + s0**2),
            "scaled_logsnr": float(model.logsnr0) + 2 * math.log(s) if s > 0 else None,
        }
    else:
        out |= {"decoder_input": "z_clean (the posterior mean)", "scale": 1.0 / s if s > 0 else 1.0}
    return out
