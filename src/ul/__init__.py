"""Unified Latents: a latent-diffusion autoencoder (Heek et al., 2026) and its training library.

from ul import Autoencoder, LatentDiffusion
ae = Autoencoder.load("models/stage1")            # encode / noisy / decode / reconstruct / rate
x = LatentDiffusion.load("models/stage1", "models/stage2").sample(16)
"""

__version__ = "0.1.0"
__all__ = ["Autoencoder", "LatentDiffusion"]


def __getattr__(name):  # lazy: `import ul` stays light for the pipeline's stages
    if name in __all__:
        from ul import api

        return getattr(api, name)
    raise AttributeError(f"module 'ul' has no attribute {name!r}")
