"""Conversions between the model's [-1, 1] floats and 8-bit images, and PNG grids (Pillow only).

The models work on floats in [-1, 1]; data on disk and everything shown to people is uint8.
`to_uint8` / `from_uint8` are exact inverses on the 8-bit grid, so a decoded image written to a
PNG and read back is the same tensor the metrics saw. No torchvision: it is not installed.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float → uint8 in [0, 255]; clamps first (samplers overshoot), rounds to nearest."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def from_uint8(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 N×C×H×W (numpy or tensor) → float32 tensor in [-1, 1]; exact inverse of `to_uint8`."""
    if isinstance(x, np.ndarray):  # copy: the array may be a read-only memory map
        x = torch.from_numpy(np.array(x))
    if x.dtype != torch.uint8:
        raise TypeError(f"from_uint8 expects uint8, got {x.dtype}")
    return x.float() / 127.5 - 1.0


def check_unit_range(name: str, x: torch.Tensor) -> torch.Tensor:
    """`x` itself if every value is in [0, 1], else a ValueError naming the range found."""
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError(
            f"{name}: images must be in [0, 1], got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]"
        )
    return x


def frames_of(x: np.ndarray | torch.Tensor, per_clip: int = 0) -> torch.Tensor:
    """Clips N×C×T×H×W → their frames (N·T)×C×H×W as a tensor (frame-level metrics); images unchanged.
    `per_clip` > 0 keeps that many evenly spaced frames of each clip, the first and last included."""
    if isinstance(x, np.ndarray):  # copy: the array may be a read-only memory map
        x = torch.from_numpy(np.array(x))
    if x.dim() != 5:
        return x
    if 0 < per_clip < x.shape[2]:
        x = x[:, :, torch.linspace(0, x.shape[2] - 1, per_clip).round().long()]
    return x.transpose(1, 2).flatten(0, 1)


def _as_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Accept uint8 or [-1, 1] float, numpy or tensor; return a uint8 tensor on the CPU."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.array(images))
    images = images.detach().cpu()
    return images if images.dtype == torch.uint8 else to_uint8(images)


def save_grid(
    images: np.ndarray | torch.Tensor,
    path: str | Path,
    nrow: int = 8,
    pad: int = 2,
    pad_value: int = 255,
    scale: int = 1,
    fps: float = 8.0,
) -> Path:
    """Write N×C×H×W images as one PNG grid, `nrow` images per row, and return the path.

    Images may be uint8 or floats in [-1, 1]. One channel is written as an 8-bit grey PNG ("L"),
    three as "RGB": grey data stays grey, so the file is a third of the size and looks the same.
    Padding is white by default because our grey datasets have black backgrounds.
    `scale` enlarges each tile by pixel repetition (nearest neighbour) so that small images can be
    judged by eye; the metrics never see the enlarged copy.
    Size: width = ncol·(scale·W + pad) + pad, height = nrows·(scale·H + pad) + pad (torchvision's layout).
    Video clips (N×C×T×H×W) become an animated PNG (APNG, `fps` frames per second, looping): one
    such grid per frame, which browsers, GitHub and `dvc plots` show as it plays.
    """
    path = Path(path)
    data = png_bytes(images, nrow, pad, pad_value, scale, fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def png_bytes(
    images: np.ndarray | torch.Tensor, nrow: int = 8, pad: int = 2, pad_value: int = 255, scale: int = 1, fps=8.0
) -> bytes:
    """The PNG (APNG for clips) that `save_grid` writes, as bytes."""
    x = _as_uint8(images)
    if x.dim() not in (4, 5) or x.shape[1] not in (1, 3):
        raise ValueError(f"save_grid expects N×C×H×W or N×C×T×H×W with C in (1, 3), got {tuple(x.shape)}")
    clips = x.unbind(2) if x.dim() == 5 else [x]
    frames = [Image.fromarray(_grid(f, nrow, pad, pad_value, scale)) for f in clips]
    buf = io.BytesIO()
    if len(frames) == 1:
        frames[0].save(buf, format="PNG")
    else:
        frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    return buf.getvalue()


def _grid(x: torch.Tensor, nrow: int, pad: int, pad_value: int, scale: int) -> np.ndarray:
    """uint8 N×C×H×W → one H'×W' (grey) or H'×W'×3 (RGB) grid array."""
    if scale > 1:
        x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    n, c, h, w = x.shape
    ncol = max(1, min(nrow, n))
    nrows = math.ceil(n / ncol)
    grid = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, top : top + h, left : left + w] = x[i]
    array = grid.permute(1, 2, 0).numpy()
    return array[:, :, 0] if c == 1 else array  # uint8 2-D → "L", H×W×3 → "RGB"


def save_pairs_grid(
    originals: np.ndarray | torch.Tensor,
    reconstructions: np.ndarray | torch.Tensor,
    path: str | Path,
    nrow: int = 8,
    pad: int = 2,
    scale: int = 1,
    fps: float = 8.0,
) -> Path:
    """Reconstruction grid: each original immediately left of its reconstruction (clips: animated).

    Columns alternate original, reconstruction, original, ...; `nrow` is the number of PAIRS per
    row, so the grid has 2·nrow image columns. Inputs may mix uint8 and [-1, 1] floats.
    """
    a, b = _as_uint8(originals), _as_uint8(reconstructions)
    if a.shape != b.shape:
        raise ValueError(f"save_pairs_grid: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    interleaved = torch.stack([a, b], dim=1).flatten(0, 1)  # o0, r0, o1, r1, ...
    return save_grid(interleaved, path, nrow=2 * nrow, pad=pad, scale=scale, fps=fps)


def display_scale(size: int, target: int = 96) -> int:
    """The integer enlargement that shows a size-pixel tile at about `target` pixels or more."""
    return max(1, -(-target // size))
