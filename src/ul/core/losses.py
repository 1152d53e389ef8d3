"""The Unified Latents loss terms, exactly per docs/method.md. Every term is per example, in nats,
SUMMED over its own tensor's dimensions (never a per-element mean: that would re-weight the prior
against the decoder by their size ratio and make the loss factor meaningless).

All denoisers here are x-predictions `x̂(z_t, λ)`; networks predicting v are wrapped by
`networks.VDenoiser`. The weighted-ELBO integrand, for data y and its estimate ŷ at log-SNR λ(t), is

    (−dλ/dt) · exp(λ)/2 · w(λ) · ‖y − ŷ‖²,       w ≡ 1 is the ELBO.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import torch

from ul.core import rng
from ul.core.schedules import alpha_sigma, low_discrepancy_t

Denoiser = Callable[..., torch.Tensor]  # x̂ = f(z_t, logsnr, [cond])


def sum_per_example(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(1)


def diffuse(y: torch.Tensor, logsnr: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """y_t = α·y + σ·ε, with λ broadcast per example."""
    alpha, sigma = alpha_sigma(logsnr.view(-1, *([1] * (y.dim() - 1))))
    return alpha * y + sigma * eps


def weighted_elbo_term(y, y_hat, logsnr, dlogsnr_dt, weight=None) -> torch.Tensor:
    """(−dλ/dt)·exp(λ)/2·w(λ)·‖y − ŷ‖², per example. The weight must be positive: −dλ/dt > 0."""
    w = -dlogsnr_dt * torch.exp(logsnr) / 2
    if weight is not None:
        w = w * weight
    return w * sum_per_example((y - y_hat).pow(2))


def terminal_kl(z_clean: torch.Tensor, logsnr_min: float) -> torch.Tensor:
    """KL(N(α1·z, σ1²I) ‖ N(0, I)) = ½ Σ[α1²·z² + σ1² − 1 − log σ1²], per example, at λ_min.
    Without it the prior loss is no bound and the latent scale goes unpenalised."""
    lam = torch.tensor(logsnr_min, dtype=torch.float32, device=z_clean.device)
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    return 0.5 * sum_per_example(a2 * z_clean.pow(2) + s2 - 1 - torch.log(s2))


def sigmoid_weight(logsnr: torch.Tensor, bias: float) -> torch.Tensor:
    """sigmoid(b − λ): the decoder's (and base model's) weight relative to the ELBO; near 1 at
    high noise, near 0 at low noise. Note exp(λ)·sigmoid(b−λ) = exp(b)·sigmoid(λ−b)."""
    return torch.sigmoid(bias - logsnr)


@dataclass
class NoiseDraw:
    """One draw of every random quantity a loss needs, made by the caller (so a run's randomness
    comes from one seeded generator and can be saved, restored and split across ranks)."""

    t: torch.Tensor  # (B,)
    eps: torch.Tensor  # like the diffused tensor

    @classmethod
    def draw(cls, batch: int, shape, generator: rng.Generators) -> NoiseDraw:
        """A stratified t per example (`low_discrepancy_t`) and a standard normal ε of `shape`; with
        one generator per example (ul.core.rng), each row is its own draw of batch 1 (t uniform)."""
        if isinstance(generator, Sequence):
            rng.check(generator, batch)
            rows = [cls.draw(1, shape, g) for g in generator]
            return cls(t=torch.cat([r.t for r in rows]), eps=torch.cat([r.eps for r in rows]))
        return cls(t=low_discrepancy_t(batch, generator), eps=torch.randn((batch, *shape), generator=generator))

    def rows(self, index) -> NoiseDraw:
        """The draw of some examples (a rank's slice of the global batch)."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device) -> NoiseDraw:
        return replace(self, **{f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)})


def prior_loss(z_clean, prior: Denoiser, schedule, draw: NoiseDraw) -> dict:
    """L_z: the unweighted ELBO of the latent diffusion from λ_min (t=1) up to λ(0) (t=0), plus
    the terminal KL. An upper bound on the bitrate of z0 = α0·z_clean + σ0·ε_z. Gradients flow into
    z_clean (the encoder) through both parts; no stop-gradient (the paper's ablation)."""
    logsnr = schedule.logsnr(draw.t)
    z_t = diffuse(z_clean, logsnr, draw.eps)
    z_hat = prior(z_t, logsnr)
    diffusion = weighted_elbo_term(z_clean, z_hat, logsnr, schedule.dlogsnr_dt(draw.t))
    kl = terminal_kl(z_clean, schedule.logsnr_min)
    return {"prior_diffusion": diffusion, "prior_terminal_kl": kl, "prior": diffusion + kl}


def decoder_loss(x, z0, decoder: Denoiser, schedule, draw: NoiseDraw, loss_factor: float, sigmoid_bias: float) -> dict:
    """L_x = c_lf · (−dλ/dt)·exp(λ)/2·sigmoid(b − λ)·‖x − x̂(x_t, z0, λ)‖², conditioned on the NOISY z0.
    The pixel-space terminal KL is dropped (docs/method.md)."""
    logsnr = schedule.logsnr(draw.t)
    x_t = diffuse(x, logsnr, draw.eps)
    x_hat = decoder(x_t, logsnr, z0)
    dlogsnr_dt = schedule.dlogsnr_dt(draw.t)
    term = weighted_elbo_term(x, x_hat, logsnr, dlogsnr_dt, sigmoid_weight(logsnr, sigmoid_bias))
    # The same network output under the plain ELBO weight (c_lf = 1, w = 1): what evaluation reports
    # in nats. Detached: it is a measurement, never part of the training loss.
    elbo = weighted_elbo_term(x, x_hat.detach(), logsnr, dlogsnr_dt)
    return {"decoder": loss_factor * term, "decoder_elbo": elbo}


def base_loss(z_clean, base: Denoiser, schedule, draw: NoiseDraw, sigmoid_bias: float) -> dict:
    """Stage 2: a sigmoid-weighted ELBO on frozen latents; `schedule` tops out at λ(0), so the base
    model only ever sees λ ≤ λ(0) and its samples end exactly where the decoder's condition lives."""
    logsnr = schedule.logsnr(draw.t)
    z_t = diffuse(z_clean, logsnr, draw.eps)
    z_hat = base(z_t, logsnr)
    term = weighted_elbo_term(z_clean, z_hat, logsnr, schedule.dlogsnr_dt(draw.t), sigmoid_weight(logsnr, sigmoid_bias))
    return {"base": term}
