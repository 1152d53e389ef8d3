"""Samplers: one step function each (DDIM, ancestral, DPM-Solver++(2M)) over a log-SNR grid, and the
loop that runs them (docs/method.md, "Sampling"). Every step costs one network evaluation: the loop
hands it x̂ at the step's start, and `previous`, the (x̂, λ) of the step before (None on the first
step), which only the multistep solver uses.

Generation (Algorithm 2 of the paper): z1 ~ N(0, I) → base-model sampler down to z0 at λ(0) (the
NOISY latent, where the decoder's condition lives; it is not denoised further) → x1 ~ N(0, I) →
decoder sampler conditioned on that z0 → image. The stage-1 prior is never sampled.
Random numbers are drawn on the CPU from the caller's generator (or one generator per example:
ul.core.rng), then moved, so a seed gives the same sample on any device. Nothing here turns off
gradients: a caller that needs none says so (torch.no_grad), and one that needs them has them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm import tqdm

from ul.core import rng
from ul.core.schedules import alpha_sigma


def ddim_step(z_t, x_hat, logsnr_t, logsnr_s, generator=None, previous=None):
    """Deterministic step from λ_t to λ_s > λ_t: keep the implied ε̂, move x̂ to the new noise level.
    It is exact when x̂ is constant over the step, so its error is first order in the step."""
    a_t, s_t = alpha_sigma(logsnr_t)
    a_s, s_s = alpha_sigma(logsnr_s)
    eps_hat = (z_t - a_t * x_hat) / s_t
    return a_s * x_hat + s_s * eps_hat


def ancestral_step(z_t, x_hat, logsnr_t, logsnr_s, generator=None, previous=None):
    """Stochastic step from λ_t to λ_s > λ_t: a draw from the Gaussian posterior q(z_s | z_t, x = x̂)."""
    a_t, s_t = alpha_sigma(logsnr_t)
    a_s, s_s = alpha_sigma(logsnr_s)
    a_ts = a_t / a_s
    var_ts = s_t**2 - a_ts**2 * s_s**2
    mean = (a_ts * s_s**2 / s_t**2) * z_t + (a_s * var_ts / s_t**2) * x_hat
    std = (var_ts * s_s**2 / s_t**2).clamp_min(0).sqrt()
    noise = rng.randn(z_t.shape, generator).to(z_t.device)
    return mean + std * noise


# dpm2m extrapolates only when the previous step is at least this fraction of the current one. A line
# through x̂ over a short step does not hold over a step more than 4 times longer: the decoder's last
# step on the cosine grid (λ 6.9 → 15 after 5.5 → 6.9 at 50 steps). Falling back to DDIM there takes
# the variance error for N(0, 0.01) data from +76% to -6% (docs/method.md, "Sampling").
MIN_STEP_RATIO = 0.25


def dpm2m_step(z_t, x_hat, logsnr_t, logsnr_s, generator=None, previous=None):
    """DPM-Solver++(2M) (Lu et al. 2022): the DDIM step, which is exact for the linear part, taken with
    x̂ extrapolated linearly in λ to the middle of the step from the previous step's (x̂, λ). This
    is second order in the step at one network evaluation per step, since it reuses the old x̂."""
    if previous is not None:
        x_prev, logsnr_prev = previous
        ratio = (logsnr_t - logsnr_prev) / (logsnr_s - logsnr_t)  # previous step length / this one
        if ratio >= MIN_STEP_RATIO:
            x_hat = x_hat + (x_hat - x_prev) / (2 * ratio)
    return ddim_step(z_t, x_hat, logsnr_t, logsnr_s)


STEPS = {"ddim": ddim_step, "ancestral": ancestral_step, "dpm2m": dpm2m_step}


def step_function(sampler: str) -> Callable:
    """The step of a sampler by name; an unknown name is an error, never a silent fallback."""
    try:
        return STEPS[sampler]
    except KeyError:
        raise ValueError(f"unknown sampler {sampler!r} (choose from {', '.join(STEPS)})") from None


def sample(
    denoiser: Callable,
    shape,
    schedule,
    steps: int,
    sampler: str = "dpm2m",
    cond=None,
    generator: rng.Generators = None,
    device="cpu",
    end_noisy: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Run `steps` steps from λ(1) (pure noise) to λ(0) of `schedule`, uniform in t.

    `steps` is the number of network evaluations of the loop, for every sampler (one per step).
    end_noisy=False returns the final x̂ (a clean sample), which costs one more evaluation;
    True returns z at λ(0) itself, which is what the base model must hand the decoder.
    """
    step = step_function(sampler)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    logsnr = schedule.logsnr(t).float()

    def denoise(z, lam):
        lam = torch.full((shape[0],), float(lam), device=device)
        return denoiser(z, lam) if cond is None else denoiser(z, lam, cond)

    z = rng.randn(shape, generator).to(device)
    previous = None
    for i in tqdm(range(steps), disable=not progress, desc="sampling", unit="step", leave=False):
        logsnr_t, logsnr_s = logsnr[i].to(device), logsnr[i + 1].to(device)
        x_hat = denoise(z, logsnr[i])
        z = step(z, x_hat, logsnr_t, logsnr_s, generator, previous)
        previous = (x_hat, logsnr_t)
    return z if end_noisy else denoise(z, logsnr[-1])


def generate(
    base,
    model,
    n: int,
    base_steps: int,
    decoder_steps: int,
    sampler: str = "dpm2m",
    generator=None,
    device="cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Algorithm 2: the base model down to z0 at λ(0), then the decoder conditioned on it; [-1, 1]."""
    z0 = base.sample_latents(n, base_steps, sampler, generator, device, progress)
    return model.decode(z0, decoder_steps, sampler, generator, progress)
