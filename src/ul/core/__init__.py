"""The paper, and nothing else: log-SNR schedules, the loss terms, the networks, the samplers, the
two models (Unified Latents and the base model) and the KL-VAE baseline. Imports only ul.common."""
