"""The two models of the method: stage-1 Unified Latents (encoder + prior + decoder, trained
jointly) and the stage-2 base model on frozen latents (docs/method.md). Each draws its own noise
from a generator it is handed, so a training loop only has to hand it a batch and a generator.

Units: images in [-1, 1]; loss terms in nats per example, summed over the example's dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ul.common import compiled
from ul.common.config import Config
from ul.core import samplers
from ul.core.losses import NoiseDraw, base_loss, decoder_loss, diffuse, prior_loss
from ul.core.networks import Encoder, UNet, VDenoiser, image_shape, latent_frames, latent_shape
from ul.core.schedules import CosineLogSNR, LinearLogSNR, alpha_sigma


@dataclass
class StepNoise:
    """Every random number one stage-1 step needs, for a (global) batch: the prior's draw (t, ε on
    the latent), the decoder's draw (t, ε on the image) and ε_z0, the encoder noise at λ(0)."""

    prior: NoiseDraw
    decoder: NoiseDraw
    eps_z0: torch.Tensor

    def rows(self, index) -> StepNoise:
        return StepNoise(self.prior.rows(index), self.decoder.rows(index), self.eps_z0[index])

    def to(self, device) -> StepNoise:
        return StepNoise(self.prior.to(device), self.decoder.to(device), self.eps_z0.to(device, non_blocking=True))


def sampling_net(model: nn.Module, net: nn.Module, device) -> Callable:
    """`net` as the samplers call it: compiled once per model, network and device when the model's
    `sample_compile` (sample.compile) asks (ul.common.compiled), else as it is."""
    enabled = compiled.wanted(model.sample_compile, torch.device(device))
    if not enabled:
        return net
    cache = model.__dict__.setdefault("_sampling_nets", {})  # a plain attribute: no state_dict entry
    key = (id(net), str(device))
    if key not in cache:
        cache[key] = compiled.CompiledOrEager(net, True, "sampling")
    return cache[key]


class UnifiedLatents(nn.Module):
    """Stage 1. L = L_z + L_x with z0 = α0·E(x) + σ0·ε_z; the decoder is conditioned on z0."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_shape, self.x_shape = latent_shape(cfg), image_shape(cfg)
        c_img, res, c_z, r_z, frames = (
            self.x_shape[0],
            self.x_shape[-1],
            self.z_shape[0],
            self.z_shape[-1],
            cfg.data.frames,
        )
        self.encoder = Encoder(c_img, cfg.encoder, frames)
        self.prior = VDenoiser(UNet(c_z, r_z, cfg.prior, frames=latent_frames(self.z_shape)))
        self.decoder = VDenoiser(UNet(c_img, res, cfg.decoder, c_cond=c_z, cond_resolution=r_z, frames=frames))
        self.logsnr0 = float(cfg.noise.logsnr)
        self.prior_schedule = LinearLogSNR(cfg.noise.logsnr_min, self.logsnr0)
        self.decoder_schedule = CosineLogSNR(
            cfg.unified.decoder_logsnr_min, cfg.unified.decoder_logsnr_max, cfg.unified.decoder_logsnr_shift
        )
        # c_lf lives in the state (checkpointed, exported) because a rate target moves it in training.
        self.register_buffer("log_loss_factor", torch.tensor(math.log(cfg.unified.loss_factor)))
        self.register_buffer("rate_ema", torch.tensor(-1.0))  # bits per pixel, < 0 until measured
        self.sample_compile = cfg.sample.compile  # the evaluate stage sets its own params' value

    @property
    def loss_factor(self) -> torch.Tensor:
        return self.log_loss_factor.exp()

    def rate_nats(self, z_clean: torch.Tensor, draw: NoiseDraw) -> torch.Tensor:
        """L_z per example (nats) for one noise draw: the prior's bound on the bits of z0."""
        return prior_loss(z_clean, self.prior, self.prior_schedule, draw)["prior"]

    def draw_noise(self, batch: int, generator: torch.Generator) -> StepNoise:
        """Every random number one step needs, for a (global) batch; slice it per rank with `rows`."""
        prior = NoiseDraw.draw(batch, self.z_shape, generator)
        decoder = NoiseDraw.draw(batch, self.x_shape, generator)
        return StepNoise(prior, decoder, torch.randn((batch, *self.z_shape), generator=generator))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z_clean = E(x), in float32 (also under autocast)."""
        return self.encoder(x).float()

    def noisy(self, z_clean: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z0 = α0·z_clean + σ0·ε: the fixed encoder noise, the first step of the prior's diffusion."""
        return diffuse(z_clean, torch.full((len(z_clean),), self.logsnr0, device=z_clean.device), eps)

    def decode(self, z0: torch.Tensor, steps: int, sampler: str = "dpm2m", generator=None, progress=False):
        """x ~ p(x | z0): the decoder's sampler conditioned on the noisy latent z0; [-1, 1] images."""
        shape = (len(z0), *self.x_shape)
        x = samplers.sample(
            sampling_net(self, self.decoder, z0.device),
            shape,
            self.decoder_schedule,
            steps,
            sampler,
            cond=z0,
            generator=generator,
            device=z0.device,
            progress=progress,
        )
        return x.clamp(-1, 1)

    def forward(self, x: torch.Tensor, noise: StepNoise, z0: torch.Tensor | None = None) -> dict:
        """Per-example loss terms in nats; `loss` = L_z + L_x is what training minimises.
        `z0` replaces the decoder's condition (e.g. another image's latent, to measure latent use)."""
        z_clean = self.encode(x)
        if z0 is None:
            z0 = self.noisy(z_clean, noise.eps_z0)
        terms = prior_loss(z_clean, self.prior, self.prior_schedule, noise.prior)
        terms.update(
            decoder_loss(
                x,
                z0,
                self.decoder,
                self.decoder_schedule,
                noise.decoder,
                self.loss_factor,
                self.cfg.unified.sigmoid_bias,
            )
        )
        terms["loss"] = terms["prior"] + terms["decoder"]
        terms["loss_factor"] = self.loss_factor.expand(len(x))  # logged: it moves under a rate target
        return terms


class BaseModel(nn.Module):
    """Stage 2: a (larger) diffusion model on cached z_clean, sigmoid-weighted, λ ≤ λ(0).
    Parameterisation: v-prediction (logged as `parameterisation` in its metrics)."""

    parameterisation = "v"

    def __init__(self, cfg: Config, latent_scale: float = 1.0):
        super().__init__()
        self.cfg = cfg
        self.z_shape = latent_shape(cfg)
        self.logsnr0 = float(cfg.noise.logsnr)
        self.denoiser = VDenoiser(
            UNet(self.z_shape[0], self.z_shape[-1], cfg.base.net, frames=latent_frames(self.z_shape))
        )
        # UL: samples end at λ(0), noisy (Algorithm 2). The KL-VAE baseline's decoder wants clean
        # latents: its base model runs to λ_max = −λ_min and ends clean.
        self.end_noisy = cfg.latent == "unified"
        # The model sees u = k·z_clean, k = latent_scale (1/std of the cached latents: unit variance
        # for either latent, as SD scales its latents), on a schedule that follows: UL's
        # z0 = α0·z_clean + σ0·ε is the point of u's own diffusion at λ(0) − 2·log k, where the
        # schedule then tops out (docs/method.md §8).
        self.register_buffer("latent_scale", torch.tensor(float(latent_scale)))
        self.sample_compile = cfg.sample.compile

    @property
    def top_logsnr(self) -> float:
        """λ_max of the base schedule in the model's own (scaled) coordinates."""
        if not self.end_noisy:
            return -self.cfg.noise.logsnr_min  # symmetric: λ_max = −λ_min
        return self.logsnr0 - 2 * math.log(float(self.latent_scale))

    @property
    def schedule(self) -> CosineLogSNR:
        return CosineLogSNR(self.cfg.noise.logsnr_min, self.top_logsnr)

    def to_latents(self, u: torch.Tensor) -> torch.Tensor:
        """A sample at the schedule's end, in the model's coordinates → what the stage-1 decoder
        reads: UL's z0 = u·α0/(α'·k) (α' = α at the scaled endpoint), the KL-VAE's z = u/k."""
        k = self.latent_scale
        if not self.end_noisy:
            return u / k
        a0, a_top = alpha_sigma(self.logsnr0)[0], alpha_sigma(self.top_logsnr)[0]
        return u * (float(a0) / (float(a_top) * k))

    def draw_noise(self, batch: int, generator: torch.Generator) -> NoiseDraw:
        return NoiseDraw.draw(batch, self.z_shape, generator)

    def sample_latents(self, n: int, steps: int, sampler: str = "dpm2m", generator=None, device="cpu", progress=False):
        """What the stage-1 decoder reads: for UL, latents at λ(0), still NOISY (where the decoder's
        condition lives, Algorithm 2); for the KL-VAE, clean latents in the encoder's own scale."""
        z = samplers.sample(
            sampling_net(self, self.denoiser, device),
            (n, *self.z_shape),
            self.schedule,
            steps,
            sampler,
            generator=generator,
            device=device,
            end_noisy=self.end_noisy,
            progress=progress,
        )
        return self.to_latents(z)

    def forward(self, z_clean: torch.Tensor, noise: NoiseDraw) -> dict:
        z = z_clean * self.latent_scale
        terms = base_loss(z, self.denoiser, self.schedule, noise, self.cfg.base.sigmoid_bias)
        terms["loss"] = terms["base"]
        return terms


def check_pair(model: UnifiedLatents, base: BaseModel) -> None:
    """A base model can feed a decoder only if it was trained on that autoencoder's latents: same
    λ(0) (where its samples end and the decoder's condition lives) and the same latent shape."""
    if abs(base.logsnr0 - model.logsnr0) > 1e-9:
        raise ValueError(
            f"base model ends at λ(0) = {base.logsnr0:g}, the autoencoder's decoder expects "
            f"λ(0) = {model.logsnr0:g}: they were not trained together"
        )
    if tuple(base.z_shape) != tuple(model.z_shape):
        raise ValueError(
            f"base model latents {tuple(base.z_shape)} differ from the autoencoder's {tuple(model.z_shape)}"
        )


def stage1_model(cfg: Config) -> nn.Module:
    """The stage-1 autoencoder that `latent` names: UnifiedLatents, or the KL-VAE baseline."""
    from ul.core.klvae import KLVAE

    return {"unified": UnifiedLatents, "klvae": KLVAE}[cfg.latent](cfg)
