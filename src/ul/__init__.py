"""Unified Latents: a latent-diffusion autoencoder (Heek et al., 2026) and its training library."""

__version__ = "0.1.0"
