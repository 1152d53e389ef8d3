"""The baseline: a Stable-Diffusion-style KL-VAE through the same pipeline (`latent: klvae`).

The encoder predicts a mean and a log-variance per latent dimension; training minimises an L1
pixel loss (summed per image) plus `klvae.kl_weight` times KL(q(z|x) ‖ N(0, I)) in nats, as SD's
autoencoder does without its LPIPS and GAN terms (their weights do not exist offline). The latent
has the shape of UL's; the cached latent is the posterior mean, and its rate is the KL in bits
(an upper bound on the information it carries, the analogue of UL's prior bound).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ul.common.config import Config
from ul.core.losses import sum_per_example
from ul.core.networks import ConvDecoder, Encoder, image_shape, latent_shape


@dataclass
class LatentNoise:
    """The reparameterisation noise of one step: z = μ + σ·ε."""

    eps: torch.Tensor

    def rows(self, index) -> LatentNoise:
        return LatentNoise(self.eps[index])

    def to(self, device) -> LatentNoise:
        return LatentNoise(self.eps.to(device, non_blocking=True))


class KLVAE(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_shape, self.x_shape = latent_shape(cfg), image_shape(cfg)
        c_img = self.x_shape[0]
        frames = cfg.data.frames
        self.encoder = Encoder(c_img, replace(cfg.encoder, latent_channels=2 * cfg.encoder.latent_channels), frames)
        self.decoder = ConvDecoder(c_img, cfg.encoder, frames)
        self.logsnr0 = float(cfg.noise.logsnr)  # the base model's config carries it too (ul.core.model.check_pair)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x); the log-variance clamped as SD does."""
        mean, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def draw_noise(self, batch: int, generator: torch.Generator) -> LatentNoise:
        return LatentNoise(torch.randn((batch, *self.z_shape), generator=generator))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: what the latent cache stores."""
        return self.posterior(x)[0]

    def noisy(self, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The decoder reads the posterior mean as it is: the KL-VAE has no fixed encoder noise."""
        return z

    def decode(self, z: torch.Tensor, steps: int = 0, sampler: str = "", generator=None, progress=False):
        """x̂ = D(z) in one pass ([-1, 1]); `steps`/`sampler` are there for UL's signature only."""
        return self.decoder(z).float().clamp(-1, 1)

    @staticmethod
    def kl_nats(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ[μ² + σ² − 1 − log σ²], nats per example."""
        return 0.5 * sum_per_example(mean.pow(2) + logvar.exp() - 1 - logvar)

    def rate_nats(self, x: torch.Tensor) -> torch.Tensor:
        return self.kl_nats(*self.posterior(x))

    def forward(self, x: torch.Tensor, noise: LatentNoise) -> dict:
        mean, logvar = self.posterior(x)
        z = mean + (0.5 * logvar).exp() * noise.eps
        reconstruction = sum_per_example((x - self.decoder(z).float()).abs())
        kl = self.kl_nats(mean, logvar)
        return {"reconstruction": reconstruction, "kl": kl, "loss": reconstruction + self.cfg.klvae.kl_weight * kl}
