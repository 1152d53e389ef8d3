"""A stage-1 export as a diffusers model (`pip install 'unified-latents[diffusers]'`).

    from ul.integrations.diffusers import UnifiedLatentsVAE
    vae = UnifiedLatentsVAE.from_pretrained("models/stage1")     # a ul export, or a save_pretrained folder
    z0 = vae.encode(x).latent_dist.sample(generator)              # x: N×C×H×W in [-1, 1]
    x_rec = vae.decode(z0, generator=generator).sample
    latents = z0 * vae.config.scaling_factor                      # unit variance, for your own diffusion model

UL's encoder output is already a diagonal Gaussian of fixed variance, z0 = α0·z_clean + σ0·ε, the
shape of diffusers' `latent_dist` (mean α0·z_clean, std σ0), and its decoder is a diffusion model
like diffusers' ConsistencyDecoderVAE's: `decode` samples x ~ p(x | z0) with `num_inference_steps`
network evaluations. With the same generators the results equal `ul.Autoencoder`'s. The config
carries the whole ul config, the latents' statistics and `scaling_factor` (ul.artifacts.latent_stats).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

from ul import extras
from ul.artifacts import export
from ul.common.config import from_dict, to_dict
from ul.core import rng
from ul.core.model import UnifiedLatents
from ul.core.schedules import alpha_sigma

extras.require("diffusers", "ul.integrations.diffusers")  # a missing extra: one message naming it
from diffusers.configuration_utils import ConfigMixin, register_to_config  # noqa: E402 (after the extras check)
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution  # noqa: E402
from diffusers.models.modeling_outputs import AutoencoderKLOutput  # noqa: E402
from diffusers.models.modeling_utils import ModelMixin  # noqa: E402


class UnifiedLatentsVAE(ModelMixin, ConfigMixin):
    """The UL autoencoder (encoder, prior, diffusion decoder) behind diffusers' VAE interface."""

    @register_to_config
    def __init__(self, ul_config: dict, latents: dict | None = None, scaling_factor: float = 1.0):
        super().__init__()
        cfg = from_dict(ul_config)
        if cfg.latent != "unified":
            raise ValueError(f"latent={cfg.latent!r}: the diffusers adapter holds a Unified Latents model")
        self.ul = UnifiedLatents(cfg)

    @classmethod
    def from_pretrained(cls, path, *args, **kwargs):
        """A ul export folder (model.safetensors + ul's config.json) or a `save_pretrained` folder."""
        folder = Path(path)
        if (folder / export.CONFIG).is_file() and export.read_meta(folder).get("format") == export.FORMAT:
            return cls.from_export(folder)
        # accelerate is optional: without it diffusers warns unless low_cpu_mem_usage is off
        kwargs.setdefault("low_cpu_mem_usage", importlib.util.find_spec("accelerate") is not None)
        return super().from_pretrained(path, *args, **kwargs)

    @classmethod
    def from_export(cls, folder: str | Path) -> UnifiedLatentsVAE:
        model, cfg = export.load(folder, expect=UnifiedLatents)
        latents = export.read_meta(folder).get("latents")
        vae = cls(to_dict(cfg), latents, float((latents or {}).get("scale", 1.0)))
        vae.ul.load_state_dict(model.state_dict())
        return vae.eval().requires_grad_(False)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """latent_dist = N(α0·E(x), σ0²): what `ul.Autoencoder.noisy(encode(x))` draws from."""
        z_clean = self.ul.encode(x)
        mean = self.ul.noisy(z_clean, torch.zeros_like(z_clean))  # α0·z_clean, computed as the model does
        log_var = 2 * math.log(float(alpha_sigma(float(self.ul.logsnr0))[1]))  # log σ0²
        logvar = torch.full_like(mean, log_var)
        dist = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1))
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(
        self,
        z: torch.Tensor,
        generator: rng.Generators = None,
        return_dict: bool = True,
        num_inference_steps: int = 50,
        sampler: str = "dpm2m",
    ):
        """x ~ p(x | z0) in [-1, 1], by `num_inference_steps` steps of `sampler` (dpm2m | ddim | ancestral)."""
        x = self.ul.decode(z, num_inference_steps, sampler, generator)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, sample: torch.Tensor, generator: rng.Generators = None, return_dict: bool = True):
        """encode → a draw of z0 → decode (a reconstruction)."""
        z0 = self.encode(sample).latent_dist.sample(generator)
        return self.decode(z0, generator, return_dict)
