"""Noise schedules in log-SNR, and the one unit convention of the project.

Conventions (docs/method.md): λ = log(α²/σ²), variance preserving, so α² = sigmoid(λ) and
σ² = sigmoid(−λ). Time t ∈ [0, 1]; λ(t) DEcreases in t, so dλ/dt < 0 and every ELBO weight
carries −dλ/dt > 0. (VDM's γ is −λ; it is not used here.)

Units: every loss term is per example, in nats, summed over its own tensor's dimensions;
`bits()` is the only place nats become bits and are normalised per image / latent dim / pixel /
sub-pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def alpha_sigma(logsnr: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """(α, σ) for log-SNR λ: α² = sigmoid(λ), σ² = sigmoid(−λ); α² + σ² = 1."""
    logsnr = torch.as_tensor(logsnr, dtype=torch.float64 if isinstance(logsnr, float) else None)
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


@dataclass(frozen=True)
class LinearLogSNR:
    """λ(t) = λ_max + t·(λ_min − λ_max): constant −dλ/dt. Used by the prior (unweighted ELBO)."""

    logsnr_min: float
    logsnr_max: float

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        return self.logsnr_max + t * (self.logsnr_min - self.logsnr_max)

    def dlogsnr_dt(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, self.logsnr_min - self.logsnr_max)


@dataclass(frozen=True)
class CosineLogSNR:
    """The cosine schedule λ(t) = −2·log tan(u(t)) + shift, truncated to [λ_min, λ_max].

    u runs linearly from u_min = atan(exp(−(λ_max−shift)/2)) to u_max = atan(exp(−(λ_min−shift)/2)),
    so λ(0) = λ_max and λ(1) = λ_min exactly. `shift` moves where t samples λ: for a loss whose
    weight is a function of λ it changes the estimate's variance (and a sampler's grid), never the
    expected loss (docs/method.md, section 6).
    """

    logsnr_min: float
    logsnr_max: float
    shift: float = 0.0

    def _u_range(self) -> tuple[float, float]:
        u_min = math.atan(math.exp(-0.5 * (self.logsnr_max - self.shift)))
        u_max = math.atan(math.exp(-0.5 * (self.logsnr_min - self.shift)))
        return u_min, u_max

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        u_min, u_max = self._u_range()
        u = u_min + t * (u_max - u_min)
        return -2.0 * torch.log(torch.tan(u)) + self.shift

    def dlogsnr_dt(self, t: torch.Tensor) -> torch.Tensor:
        # d/du[−2 log tan u] = −2/(sin u cos u) = −4/sin(2u)
        u_min, u_max = self._u_range()
        u = u_min + t * (u_max - u_min)
        return -4.0 / torch.sin(2.0 * u) * (u_max - u_min)


def low_discrepancy_t(batch: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """t_i = (u + i/B) mod 1 with one shared uniform u: a stratified batch that lowers the
    variance of the ELBO estimate (VDM). Every t is still marginally U(0,1)."""
    u = torch.rand((), generator=generator)
    t = (u + torch.arange(batch, dtype=torch.float32) / batch) % 1.0
    return t.to(device) if device is not None else t


LN2 = math.log(2.0)


def bits(nats: torch.Tensor | float, *, latent_shape=None, image_shape=None, per_example: bool = False) -> dict:
    """Convert a per-image rate in nats to bits per image and its normalised forms: the one place
    that converts units. Means over the examples, or with `per_example` float64 tensors of one value
    per example.

    latent_shape = (C, h, w) gives bits per latent dim; image_shape = (C_img, H, W) gives bits per
    pixel (/H·W) and per sub-pixel (/C_img·H·W). docs/method.md: the paper's normaliser is not
    stated, so all are reported, each key naming its unit. For video (image_shape = (C, T, H, W))
    an "image" is a clip: bits per clip, per frame (/T), per pixel (/T·H·W) and per sub-pixel.
    """
    per_image = torch.as_tensor(nats, dtype=torch.float64) / LN2
    per_image = per_image if per_example else float(per_image.mean())
    out = {"bits_per_image": per_image}
    if latent_shape is not None:
        out["bits_per_dim"] = per_image / math.prod(latent_shape)
    if image_shape is not None:
        if len(image_shape) == 4:
            out["bits_per_frame"] = per_image / image_shape[1]
        out["bits_per_pixel"] = per_image / math.prod(image_shape[1:])
        out["bits_per_subpixel"] = per_image / math.prod(image_shape)
    return out
