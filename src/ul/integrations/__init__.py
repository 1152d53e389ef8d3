"""Adapters that let other libraries use a trained model (each needs its extra: `diffusers`)."""
