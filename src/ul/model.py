"""The two models of the method: stage-1 Unified Latents (encoder + prior + decoder, trained
jointly) and the stage-2 base model on frozen latents. Each owns its noise draws, so a training
loop only has to hand it a batch and a generator."""
from __future__ import annotations

import torch
from torch import nn

from ul.config import Config
from ul.losses import NoiseDraw, base_loss, decoder_loss, diffuse, prior_loss
from ul.networks import Encoder, UNet, VDenoiser, latent_shape
from ul.schedules import CosineLogSNR, LinearLogSNR, low_discrepancy_t


def _draw(batch: int, shape, generator) -> NoiseDraw:
    return NoiseDraw(t=low_discrepancy_t(batch, generator), eps=torch.randn((batch, *shape), generator=generator))


class UnifiedLatents(nn.Module):
    """Stage 1. L = L_z + L_x with z0 = α0·E(x) + σ0·ε_z; the decoder is conditioned on z0."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        c_img, res = cfg.data.channels, cfg.data.resolution
        self.z_shape = latent_shape(cfg)
        self.x_shape = (c_img, res, res)
        self.encoder = Encoder(c_img, cfg.encoder)
        self.prior = VDenoiser(UNet(self.z_shape[0], self.z_shape[1], cfg.prior))
        self.decoder = VDenoiser(UNet(c_img, res, cfg.decoder, c_cond=self.z_shape[0], cond_resolution=self.z_shape[1]))
        self.logsnr0 = float(cfg.noise.logsnr)
        self.prior_schedule = LinearLogSNR(cfg.noise.logsnr_min, self.logsnr0)
        self.decoder_schedule = CosineLogSNR(cfg.ul.decoder_logsnr_min, cfg.ul.decoder_logsnr_max, cfg.ul.decoder_logsnr_shift)

    def draw_noise(self, batch: int, generator: torch.Generator) -> dict:
        """Every random number one step needs, for a (global) batch; slice it per rank."""
        p, d = _draw(batch, self.z_shape, generator), _draw(batch, self.x_shape, generator)
        return {"t_z": p.t, "eps_z_t": p.eps, "t_x": d.t, "eps_x": d.eps,
                "eps_z0": torch.randn((batch, *self.z_shape), generator=generator)}

    def noisy_latent(self, z_clean: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z0 = α0·z_clean + σ0·ε: the fixed encoder noise, the first step of the prior's diffusion."""
        return diffuse(z_clean, torch.full((len(z_clean),), self.logsnr0, device=z_clean.device), eps)

    def forward(self, x: torch.Tensor, noise: dict) -> dict:
        """Per-example loss terms in nats; `loss` = L_z + L_x is what training minimises."""
        z_clean = self.encoder(x).float()
        z0 = self.noisy_latent(z_clean, noise["eps_z0"])
        terms = prior_loss(z_clean, self.prior, self.prior_schedule, NoiseDraw(noise["t_z"], noise["eps_z_t"]))
        terms.update(decoder_loss(x, z0, self.decoder, self.decoder_schedule, NoiseDraw(noise["t_x"], noise["eps_x"]),
                                  self.cfg.ul.loss_factor, self.cfg.ul.sigmoid_bias))
        terms["loss"] = terms["prior"] + terms["decoder"]
        return terms


class BaseModel(nn.Module):
    """Stage 2: a (larger) diffusion model on cached z_clean, sigmoid-weighted, λ ≤ λ(0).
    Parameterisation: v-prediction (logged as `parameterisation` in its metrics)."""

    parameterisation = "v"

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_shape = latent_shape(cfg)
        self.denoiser = VDenoiser(UNet(self.z_shape[0], self.z_shape[1], cfg.base.net))
        self.schedule = CosineLogSNR(cfg.noise.logsnr_min, float(cfg.noise.logsnr))

    def draw_noise(self, batch: int, generator: torch.Generator) -> dict:
        d = _draw(batch, self.z_shape, generator)
        return {"t": d.t, "eps": d.eps}

    def forward(self, z_clean: torch.Tensor, noise: dict) -> dict:
        terms = base_loss(z_clean, self.denoiser, self.schedule, NoiseDraw(noise["t"], noise["eps"]), self.cfg.base.sigmoid_bias)
        terms["loss"] = terms["base"]
        return terms
