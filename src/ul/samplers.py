"""Samplers: DDIM and ancestral (DDPM) steps over a log-SNR grid, and the end-to-end procedures.

Generation (Algorithm 2 of the paper): z1 ~ N(0, I) → base-model sampler down to z0 at λ(0) (the
NOISY latent, where the decoder's condition lives; it is not denoised further) → x1 ~ N(0, I) →
decoder sampler conditioned on that z0 → image. Reconstruction: x → z_clean = E(x) →
z0 = α0·z_clean + σ0·ε → decoder sampler. The stage-1 prior is never sampled (ul-method.md).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from tqdm import tqdm

from ul.schedules import alpha_sigma


def _step(z_t, x_hat, logsnr_t, logsnr_s, sampler: str, generator):
    """One step from λ_t to λ_s > λ_t given the x-prediction x̂."""
    a_t, s_t = alpha_sigma(logsnr_t)
    a_s, s_s = alpha_sigma(logsnr_s)
    if sampler == "ddim":
        eps_hat = (z_t - a_t * x_hat) / s_t
        return a_s * x_hat + s_s * eps_hat
    # ancestral: the exact Gaussian posterior q(z_s | z_t, x = x̂)
    a_ts = a_t / a_s
    var_ts = s_t ** 2 - a_ts ** 2 * s_s ** 2
    mean = (a_ts * s_s ** 2 / s_t ** 2) * z_t + (a_s * var_ts / s_t ** 2) * x_hat
    std = (var_ts * s_s ** 2 / s_t ** 2).clamp_min(0).sqrt()
    noise = torch.randn(z_t.shape, generator=generator, device="cpu").to(z_t.device)
    return mean + std * noise


@torch.no_grad()
def sample(denoiser: Callable, shape, schedule, steps: int, sampler: str = "ddim", cond=None,
           generator: Optional[torch.Generator] = None, device="cpu", end_noisy: bool = False,
           progress: bool = False) -> torch.Tensor:
    """Run `steps` steps from λ(1) (pure noise) to λ(0) of `schedule`, uniform in t.

    end_noisy=False returns the final x̂ (a clean sample); True returns z at λ(0) itself, which is
    what the base model must hand the decoder.
    """
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    logsnr = schedule.logsnr(t).float()
    z = torch.randn(shape, generator=generator, device="cpu").to(device)
    x_hat = z
    for i in tqdm(range(steps), disable=not progress, desc="sampling", leave=False):
        lam = torch.full((shape[0],), float(logsnr[i]), device=device)
        x_hat = denoiser(z, lam) if cond is None else denoiser(z, lam, cond)
        z = _step(z, x_hat, logsnr[i].to(device), logsnr[i + 1].to(device), sampler, generator)
    if end_noisy:
        return z
    lam = torch.full((shape[0],), float(logsnr[-1]), device=device)
    return denoiser(z, lam) if cond is None else denoiser(z, lam, cond)


@torch.no_grad()
def decode(ul, z0: torch.Tensor, steps: int, sampler: str = "ddim", generator=None) -> torch.Tensor:
    """x ~ p(x | z0): the decoder's sampler conditioned on a noisy latent z0. Returns [-1, 1] images."""
    shape = (len(z0), *ul.x_shape)
    x = sample(ul.decoder, shape, ul.decoder_schedule, steps, sampler, cond=z0, generator=generator, device=z0.device)
    return x.clamp(-1, 1)


@torch.no_grad()
def reconstruct(ul, x: torch.Tensor, steps: int, sampler: str = "ddim", generator=None) -> torch.Tensor:
    """encode → z0 (fresh ε at λ(0)) → decoder sampler."""
    z_clean = ul.encoder(x).float()
    eps = torch.randn(z_clean.shape, generator=generator).to(x.device)
    return decode(ul, ul.noisy_latent(z_clean, eps), steps, sampler, generator)


@torch.no_grad()
def generate(base, ul, n: int, base_steps: int, decoder_steps: int, sampler: str = "ddim", generator=None,
             device="cpu") -> torch.Tensor:
    """Algorithm 2: base model down to z0 at λ(0), then the decoder conditioned on it."""
    z0 = sample(base.denoiser, (n, *base.z_shape), base.schedule, base_steps, sampler, generator=generator,
                device=device, end_noisy=True)
    return decode(ul, z0, decoder_steps, sampler, generator)
