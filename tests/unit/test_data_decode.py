"""decode(): pixels, labels and order; DALI CPU against Pillow; corrupt files named or skipped."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from datahelpers import corrupt_idat, jpeg, noise, packed, png, raw_files, rewrite_raw

from ul.common.shards import ShardReader
from ul.data import manifest
from ul.data.fetch import builtin
from ul.data.fetch.idx import read_idx
from ul.data.fetch.sources import fetch
from ul.data.layout import DataError
from ul.data.pixels import pil as decode_pil
from ul.data.pixels.images import decode

pytest.importorskip("nvidia.dali")
from ul.data.pixels import dali as decode_dali  # noqa: E402


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("fmnist") / "raw"
    fetch("builtin:fashion-mnist", out, max_train=40, max_test=12)
    return out


def _copy_raw(raw, dest):
    import shutil

    shutil.copytree(raw, dest)
    return dest


def test_pad_puts_the_upstream_pixels_in_the_centre(raw, tmp_path):
    m = decode(raw, tmp_path / "dec", resolution=32, channels=1, resize_mode="pad", device="cpu", batch_size=16)
    assert m["images"] == {"train": 40, "test": 12} and m["skipped"] == 0 and m["backend"] == "dali"
    assert m["device"] == "cpu" and m["images_per_s"] > 0
    upstream = read_idx(builtin.FASHION_DIR / "train-images-idx3-ubyte.gz")
    train = ShardReader(tmp_path / "dec" / "train")
    assert train.shape == (40, 1, 32, 32) and train.index["dtype"] == "uint8"
    paths = (tmp_path / "dec" / "train" / "paths.txt").read_text().splitlines()
    rows = {e.path: e for e in manifest.read(raw)}
    assert paths == sorted(p for p in rows if p.startswith("train/"))
    np.testing.assert_array_equal(train.labels, [rows[p].label for p in paths])
    for k in (0, 17, 39):
        index = int(paths[k].rsplit("/", 1)[1][:5])
        img = train[k][0, 0]  # reader[k] keeps the batch axis
        np.testing.assert_array_equal(img[2:30, 2:30], upstream[index])
        assert not img[:2].any() and not img[30:].any() and not img[:, :2].any()
    assert json.loads((tmp_path / "dec" / "skipped.json").read_text()) == []


def _both(files, **opts):
    kw = dict(threads=1, batch_size=4, device="cpu") | opts
    return (
        np.concatenate(list(decode_dali.batches(files, **kw))),
        np.concatenate(list(decode_pil.batches(files, **kw))),
    )


def test_dali_cpu_and_pillow_agree(raw, tmp_path):
    grey = packed(tmp_path / "grey", dict(list(raw_files(raw).items())[:10]))
    dali, pil = _both(grey, resolution=24, channels=1, resize_mode="pad")  # 28 → 24 crops
    np.testing.assert_array_equal(dali, pil)
    sizes = [(29, 31), (40, 33), (5, 70), (31, 8)]  # odd differences exercise DALI's rounding of the window
    files = packed(tmp_path / "colour", {f"c{i}.png": png(noise(i, h, w, 3)) for i, (h, w) in enumerate(sizes)})
    dali, pil = _both(files, resolution=32, channels=3, resize_mode="pad")
    assert dali.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(dali, pil)
    dali, pil = _both(files, resolution=32, channels=1, resize_mode="pad")  # colour → grey: ±1 level
    assert np.abs(dali.astype(int) - pil).max() <= 1
    files = packed(tmp_path / "jpeg", {f"j{i}.jpg": jpeg(noise(i, h, w, 3)) for i, (h, w) in enumerate(sizes)})
    for channels in (1, 3):  # JPEG: same libjpeg-turbo, luminance decoded directly for grey
        dali, pil = _both(files, resolution=32, channels=channels, resize_mode="pad")
        np.testing.assert_array_equal(dali, pil)


def test_resize_scales_the_shorter_side(tmp_path):
    y, x = np.mgrid[0:96, 0:64]
    smooth = np.stack([128 + 90 * np.sin(x / 9), 128 + 90 * np.cos(y / 11), (x + y) % 200], -1).astype(np.uint8)
    dali, pil = _both(packed(tmp_path, {"s.png": png(smooth)}), resolution=32, channels=3, resize_mode="resize")
    assert dali.shape == (1, 3, 32, 32)
    assert np.abs(dali.astype(int) - pil).mean() < 1.5  # antialiased bilinear in both, not bit-identical
    reference = smooth[::2, ::2][8:40].transpose(2, 0, 1)  # 64×96 → 32×48, centre rows 8..40
    assert np.abs(dali[0].astype(int) - reference).mean() < 6


@pytest.mark.parametrize("how", ["truncated", "crc-valid"])
def test_corrupt_image_fails_by_path_or_is_skipped(raw, tmp_path, how):
    files = raw_files(raw)
    bad = "train/0/00001.png" if "train/0/00001.png" in files else manifest.read(raw)[20].path
    folder = _copy_raw(raw, tmp_path / "raw")
    data = files[bad]
    rewrite_raw(folder, {bad: data[: len(data) // 2] if how == "truncated" else corrupt_idat(data)})
    with pytest.raises(DataError, match=f"1 unreadable image.*{bad}.*pixels.on_error=skip"):
        decode(folder, tmp_path / "dec", 32, 1, device="cpu", batch_size=8)
    assert not (tmp_path / "dec").exists()
    m = decode(folder, tmp_path / "dec", 32, 1, device="cpu", on_error="skip", batch_size=8)
    assert m["skipped"] == 1 and m["images"]["train"] == 39 and m["images"]["test"] == 12
    skipped = json.loads((tmp_path / "dec" / "skipped.json").read_text())
    assert [s["path"] for s in skipped] == [bad] and skipped[0]["reason"]
    assert bad not in (tmp_path / "dec" / "train" / "paths.txt").read_text()


def test_pillow_fallback_when_dali_is_missing(raw, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ul.data.pixels.dali", None)  # import now raises ImportError
    m = decode(raw, tmp_path / "pil", 32, 1, device="auto")
    assert m["backend"] == "pillow" and "dali_import_error" in m
    with pytest.raises(DataError, match="device=cuda needs NVIDIA DALI"):
        decode(raw, tmp_path / "x", 32, 1, device="cuda")
    monkeypatch.undo()
    decode(raw, tmp_path / "dali", 32, 1, device="cpu")
    for split in ("train", "test"):
        np.testing.assert_array_equal(
            ShardReader(tmp_path / "pil" / split)[:], ShardReader(tmp_path / "dali" / split)[:]
        )


def test_gpu_request_without_a_gpu_is_refused(raw, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(DataError, match="pixels.device=cuda but no CUDA GPU is visible"):
        decode(raw, tmp_path / "dec", 32, 1, device="cuda")
    with pytest.raises(DataError, match="device='gpu' must be auto, cpu or cuda"):
        decode(raw, tmp_path / "dec", 32, 1, device="gpu")
    with pytest.raises(DataError, match="resize_mode='stretch'"):
        decode(raw, tmp_path / "dec", 32, 1, resize_mode="stretch")
