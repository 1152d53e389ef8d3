"""The front door: use a trained Unified Latents model the way `diffusers`' AutoencoderKL is used.

    from ul import Autoencoder
    ae = Autoencoder.load("models/stage1")
    z0 = ae.noisy(ae.encode(x)); x_rec = ae.decode(z0)      # x: N×C×H×W floats in [-1, 1]

Images are N×C×H×W floats in [-1, 1] on any device (`ul.inputs` turns files, PIL images and uint8
arrays into that, as the pixels stage does). Latents: `z_clean` = E(x), deterministic;
`z0` = α0·z_clean + σ0·ε, the noisy latent at λ(0) that the decoder is conditioned on and that the
base model generates; `ae.latents` says their statistics and the scale for a model of your own.
Rates are in bits.

- `generator`: one `torch.Generator` for the batch, or a list of one per image (as diffusers
  takes them; `ul.core.rng.per_example(seed, first, n)` makes them), which makes every image's
  result independent of the batch it is in.
- `precision`: `fp32` (default), `bf16` (autocast: matmuls and convolutions in bfloat16, fast where
  the hardware has it) or `auto` (bf16 where it is native). Results are float32 either way.
- Gradients: the weights are frozen, and nothing here turns gradients off, so a gradient flows to
  inputs that require one (`x.requires_grad_()`, then `ae.encode(x)`); wrap calls in
  `torch.no_grad()` when none is needed (no input requires one: no graph is kept anyway).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ul.artifacts import export
from ul.common.config import Config
from ul.core import rng
from ul.core.losses import NoiseDraw
from ul.core.model import BaseModel, UnifiedLatents, check_pair
from ul.core.samplers import generate
from ul.core.schedules import bits
from ul.train import precision as precisions

RATE_UNITS = ("image", "pixel", "dim")


class Autoencoder:
    """A stage-1 export: encoder, prior (for the rate) and diffusion decoder, EMA weights."""

    def __init__(self, model: UnifiedLatents, identity: str = "", latents: dict | None = None, precision: str = "fp32"):
        self.model = model.eval().requires_grad_(False)
        self.identity = identity  # sha256 of the weights file
        self.latents = latents or {}  # config.json's `latents` (ul.artifacts.latent_stats); {} for older exports
        self.precision = precision
        self._autocast_dtype = precisions.autocast_dtype(precision, self.device)  # checks the name

    @classmethod
    def load(
        cls, path: str | Path = "models/stage1", device: str | torch.device = "cpu", precision: str = "fp32"
    ) -> Autoencoder:
        model, _ = export.load(path, device, expect=UnifiedLatents)
        meta = export.read_meta(path)
        identity = meta.get("weights_sha256") or export.identity(path)  # load checked the file against it
        return cls(model, identity, meta.get("latents"), precision)

    @property
    def config(self) -> Config:
        return self.model.cfg

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.z_shape)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.x_shape)

    @property
    def logsnr0(self) -> float:
        return self.model.logsnr0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def scale(self) -> float | None:
        """Multiply z0 by this for unit variance, before training a diffusion model of your own on it
        (1/√(α0²s² + σ0²), s the std of z_clean over the training split); None for older exports."""
        return self.latents.get("scale")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z_clean = E(x): N×latent_shape, deterministic."""
        with self._autocast():
            return self.model.encode(self._images(x))

    def noisy(self, z_clean: torch.Tensor, generator: rng.Generators = None) -> torch.Tensor:
        """z0 = α0·z_clean + σ0·ε with ε from `generator` (drawn on the CPU: the same on any device)."""
        z_clean = self._latents(z_clean)
        return self.model.noisy(z_clean, rng.randn(z_clean.shape, generator).to(z_clean.device))

    def decode(
        self,
        z0: torch.Tensor,
        steps: int = 50,
        sampler: str = "dpm2m",
        generator: rng.Generators = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """x ~ p(x | z0) by `steps` network evaluations of `sampler` (dpm2m | ddim | ancestral); [-1, 1]."""
        with self._autocast():
            return self.model.decode(self._latents(z0), steps, sampler, generator, progress)

    def reconstruct(
        self, x: torch.Tensor, steps: int = 50, sampler: str = "dpm2m", generator: rng.Generators = None
    ) -> torch.Tensor:
        """encode → noisy → decode."""
        return self.decode(self.noisy(self.encode(x), generator), steps, sampler, generator)

    def rate(
        self, x: torch.Tensor, draws: int = 8, unit: str = "image", generator: rng.Generators = None
    ) -> torch.Tensor:
        """Bits of z0 per image (`unit="pixel"`: per pixel, H·W; `"dim"`: per latent dimension):
        the prior's bound L_z / ln 2, averaged over `draws` noise draws, one value per image."""
        if unit not in RATE_UNITS:
            raise ValueError(f"unknown rate unit {unit!r} (choose from {', '.join(RATE_UNITS)})")
        m, gen = self.model, generator or torch.Generator().manual_seed(0)
        with self._autocast():
            z_clean = m.encode(self._images(x))
            nats = torch.zeros(len(z_clean), dtype=torch.float64, device=z_clean.device)
            for _ in range(draws):
                nats = (
                    nats
                    + m.rate_nats(z_clean, NoiseDraw.draw(len(z_clean), m.z_shape, gen).to(z_clean.device)).double()
                )
        per_image = bits(
            nats.cpu() / draws, latent_shape=self.latent_shape, image_shape=self.image_shape, per_example=True
        )
        return per_image[f"bits_per_{unit}"].float()

    def _autocast(self):
        dtype = self._autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        _check_shape("images", x, self.image_shape)
        if x.is_floating_point() and x.numel() and (x.min() < -1.001 or x.max() > 1.001):
            raise ValueError(f"images: values span [{float(x.min()):.3g}, {float(x.max()):.3g}], expected [-1, 1]")
        return x.to(self.device, torch.float32)

    def _latents(self, z: torch.Tensor) -> torch.Tensor:
        _check_shape("latents", z, self.latent_shape)
        return z.to(self.device, torch.float32)


def _check_shape(name: str, t: torch.Tensor, shape: tuple) -> None:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise TypeError(f"{name}: expected a float tensor, got {type(t).__name__} {getattr(t, 'dtype', '')}".rstrip())
    if t.dim() != 1 + len(shape) or tuple(t.shape[1:]) != tuple(shape):  # images or clips
        raise ValueError(f"{name}: shape {tuple(t.shape)}, the model takes N×{'×'.join(map(str, shape))}")


class LatentDiffusion:
    """Algorithm 2: a stage-2 base model generates z0 at λ(0); the stage-1 decoder renders it."""

    def __init__(self, autoencoder: Autoencoder, base: BaseModel):
        check_pair(autoencoder.model, base)
        self.autoencoder = autoencoder
        self.base = base.eval().requires_grad_(False)

    @classmethod
    def load(
        cls,
        stage1: str | Path = "models/stage1",
        stage2: str | Path = "models/stage2",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
    ) -> LatentDiffusion:
        base, _ = export.load(stage2, device, expect=BaseModel)
        return cls(Autoencoder.load(stage1, device, precision), base)

    def sample(
        self,
        n: int,
        base_steps: int = 50,
        decoder_steps: int = 50,
        sampler: str = "dpm2m",
        generator: rng.Generators = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """n images, N×C×H×W in [-1, 1] (with a list of generators, one per image)."""
        ae = self.autoencoder
        with ae._autocast():
            return generate(self.base, ae.model, n, base_steps, decoder_steps, sampler, generator, ae.device, progress)
