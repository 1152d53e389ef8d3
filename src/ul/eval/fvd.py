"""Fréchet Video Distance (Unterthiner et al., 2018) with the Kinetics-400 I3D of `ul.eval.i3d`.

Conventions, stated once:
- Clips are N×C×T×H×W (`layout="NCTHW"`, the torch layout of the video models) or N×T×H×W×C
  (`layout="NTHWC"`, the reference FVD code's and PyAV's), either uint8 in [0, 255] or float in
  [0, 1]; C is 1 (grey, repeated to RGB) or 3 (RGB). Floats are rounded to the 8-bit grid first, as
  `ul.eval.inception.InceptionFeatures` does, so a decoded video file and the same clip as a model output
  give the same features.
- The standard protocol: clips of 16 frames; every frame resized to 224×224 with TensorFlow 1's
  `tf.image.resize_bilinear` (half_pixel_centers=False, no antialiasing, reimplemented here:
  PyTorch's bilinear samples half a pixel differently), then scaled by 2·x/255 − 1 to [−1, 1].
- Features: the 400 pre-softmax logits of I3D per clip (float64, N×400). FVD is the Fréchet
  distance between Gaussians fitted to the real and generated features (`ul.metrics`), in those
  logits' units squared; like FID it is biased upward at small N, so quote it with both N.
"""

from __future__ import annotations

import numpy as np
import torch

from ul.eval.frechet import fid_from_features
from ul.eval.i3d import INPUT_SIZE, NUM_CLASSES

CLIP_FRAMES = 16
LAYOUTS = ("NCTHW", "NTHWC")


def _to_ncthw_255(clips: torch.Tensor | np.ndarray, layout: str) -> torch.Tensor:
    """Clips in `layout`, uint8 or float [0, 1] → float32 N×C×T×H×W on the 8-bit grid [0, 255]."""
    if isinstance(clips, np.ndarray):  # copy: decoded shards may be read-only memory maps
        clips = torch.from_numpy(np.array(clips))
    if layout not in LAYOUTS:
        raise ValueError(f"fvd: layout={layout!r}, use one of {LAYOUTS}")
    if clips.dim() != 5:
        raise ValueError(f"fvd: clips must be 5-D ({layout}), got shape {tuple(clips.shape)}")
    x = clips.permute(0, 4, 1, 2, 3) if layout == "NTHWC" else clips
    if x.dtype == torch.uint8:
        x = x.float()
    elif x.is_floating_point():
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ValueError(f"fvd: float clips must be in [0, 1], got [{float(x.min()):.4g}, {float(x.max()):.4g}]")
        x = (x.float() * 255.0).round()
    else:
        raise TypeError(f"fvd: clips must be uint8 or float, got {x.dtype}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"fvd: clips must have 1 or 3 channels ({layout}), got shape {tuple(clips.shape)}")
    return x


def _tf1_axis_weights(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF1 bilinear along one axis: output i samples input i·n_in/n_out (no half-pixel offset)."""
    src = torch.arange(n_out, device=device, dtype=torch.float64) * n_in / n_out  # exact at integers
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    return lo, hi, (src - lo).float()


def resize_bilinear_tf1(frames: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """`tf.compat.v1.image.resize_bilinear(frames, [size, size])` on the last two dims of a float tensor."""
    for dim in (-2, -1):
        lo, hi, frac = _tf1_axis_weights(frames.shape[dim], size, frames.device)
        a, b = frames.index_select(dim, lo), frames.index_select(dim, hi)
        frac = frac.view(-1, 1) if dim == -2 else frac
        frames = a + (b - a) * frac
    return frames


def preprocess(clips: torch.Tensor | np.ndarray, layout: str = "NCTHW", frames: int | None = CLIP_FRAMES):
    """Clips → I3D input: float32 N×3×T×224×224 in [−1, 1]; `frames=None` accepts any length ≥ 9."""
    x = _to_ncthw_255(clips, layout)
    if frames is not None and x.shape[2] != frames:
        raise ValueError(f"fvd: the protocol uses clips of {frames} frames, got {x.shape[2]}")
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = resize_bilinear_tf1(x, INPUT_SIZE)
    return (2.0 * x / 255.0 - 1.0).expand(-1, 3, -1, -1, -1).contiguous()


@torch.inference_mode()
def features(
    clips: torch.Tensor | np.ndarray,
    net: torch.nn.Module,
    batch_size: int = 8,
    layout: str = "NCTHW",
    frames: int | None = CLIP_FRAMES,
) -> np.ndarray:
    """The FVD features of `clips` (see the module doc): N×400 float64 I3D logits.

    `net` is `ul.eval.i3d_checkpoint.load(...)`; clips go through it `batch_size` at a time on its device (a clip
    of 16 frames at 224² is ~10 MB of input and a few seconds of CPU).
    """
    device = next(net.parameters()).device
    out = np.empty((len(clips), NUM_CLASSES), dtype=np.float64)
    for start in range(0, len(clips), batch_size):
        x = preprocess(clips[start : start + batch_size], layout, frames).to(device)
        out[start : start + len(x)] = net(x).double().cpu().numpy()
    return out


def frechet_video_distance(real_feats: np.ndarray, fake_feats: np.ndarray) -> float:
    """FVD between two N×400 feature sets from `features`; quote it with both N."""
    return fid_from_features(real_feats, fake_feats)
