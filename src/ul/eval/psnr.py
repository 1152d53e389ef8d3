"""PSNR, on images in [0, 1] (docs/method.md): the model works in [-1, 1]; map with `(x + 1) / 2`
first (the same formula on [-1, 1] reads 6.02 dB lower)."""

from __future__ import annotations

import torch

from ul.common.images import check_unit_range

PSNR_CAP_DB = 100.0


def psnr_db(x: torch.Tensor, y: torch.Tensor, cap_db: float = PSNR_CAP_DB) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1]; returns a tensor of shape (N,).

    Inputs outside [0, 1] are refused, not clamped (a silent clamp would hide a range bug); the
    squared error is averaged over C, H, W of each image, and PSNR = 10·log10(1 / MSE). Identical
    images would give +inf, so the value is capped at `cap_db` to keep means over a batch finite.

    The range matters: computing the same formula on [-1, 1] images quadruples the MSE and reads
    10·log10(4) = 6.02 dB LOWER. The paper's PSNR (25.7–30.1 dB) is on [0, 1].
    """
    if x.shape != y.shape:
        raise ValueError(f"psnr_db: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() == 3:  # a single C×H×W image
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    x, y = check_unit_range("psnr_db", x.detach().double()), check_unit_range("psnr_db", y.detach().double())
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    floor = 10.0 ** (-cap_db / 10.0)  # the MSE at which PSNR reaches the cap
    return (10.0 * torch.log10(1.0 / mse.clamp_min(floor))).float()
