"""Hostile images (issue 9, class 5): one policy for size, bit depth, transparency, EXIF orientation
and JPEG structure, the same through DALI, Pillow and `ul.inputs`, tested on the same files."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from datahelpers import jpeg, noise, png, raw_files, write_folder
from PIL import Image

from ul import inputs
from ul.common.shards import ShardReader
from ul.data import manifest
from ul.data.fetch.sources import fetch
from ul.data.layout import DataError
from ul.data.pixels import imagecheck
from ul.data.pixels import pil as decode_pil
from ul.data.pixels.images import decode

pytest.importorskip("nvidia.dali")

RES = 32


def _rgba(alpha_min: int) -> bytes:
    arr = np.dstack([noise(7, 20, 24, 3), np.full((20, 24), 255, np.uint8)])
    arr[3:6, 4:9, 3] = alpha_min
    return png(arr)


def _png16() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(noise(8).astype(np.uint16) * 257).save(buf, format="PNG")
    assert buf.getvalue()[24] == 16
    return buf.getvalue()


def _rotated_jpeg() -> bytes:
    """A grey 24-wide × 12-high JPEG whose EXIF says: rotate 90° clockwise to display (6)."""
    im = Image.fromarray(noise(9, 12, 24))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def _huge_canvas() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4200, 4200)).save(buf, format="PNG")  # 17.6 MP in about 20 KB
    return buf.getvalue()


CASES = {  # name: (bytes, reason it is refused, or None)
    "opaque_alpha.png": (_rgba(255), None),
    "transparent.png": (_rgba(0), "has transparent pixels"),
    "deep.png": (_png16(), "16-bit PNG"),
    "rotated.jpg": (_rotated_jpeg(), None),
    "trailing.jpg": (jpeg(noise(10, c=3)) + b"\0" * 500, None),
    "cut.jpg": (jpeg(noise(11, c=3))[:-300], "truncated JPEG"),
    # cut mid-scan, an end marker appended: every decoder shows the missing blocks as flat grey
    "cut_marked.jpg": (jpeg(noise(12, c=3))[:-300] + b"\xff\xd9", "premature end of data segment"),
    "huge.png": (_huge_canvas(), "over the budget of 16,777,216 for resolution 32"),
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    files = {f"train/{k}": data for k, (data, _) in CASES.items()}
    files |= {f"train/plain{k}.png": png(noise(20 + k, c=3)) for k in range(2)}
    files["test/plain.png"] = png(noise(30, c=3))
    fetch(f"file://{write_folder(root / 'src', files)}", root / "raw")
    return root / "raw"


@pytest.fixture(scope="module")
def decoded(raw, tmp_path_factory):
    out = {}
    for backend in ("dali", "pillow"):
        d = tmp_path_factory.mktemp(backend) / "dec"
        m = decode(raw, d, RES, 3, "pad", "cpu", on_error="skip", backend=backend)
        assert m["backend"] == backend
        paths = (d / "train" / "paths.txt").read_text().splitlines()
        out[backend] = (json.loads((d / "skipped.json").read_text()), dict(zip(paths, ShardReader(d / "train")[:])))
    return out


def test_both_decoders_refuse_the_same_files_for_the_same_reasons(decoded):
    want = {f"train/{k}": r for k, (_, r) in CASES.items() if r}
    for backend, (skipped, _) in decoded.items():
        assert {s["path"] for s in skipped} == set(want), backend
        for s in skipped:
            assert want[s["path"]] in s["reason"], (backend, s)
    assert decoded["dali"][0] == decoded["pillow"][0]


def test_user_files_follow_the_same_policy(raw):
    for k, (_, reason) in CASES.items():
        path = raw.parent / "src" / "train" / k  # the files fetch read, as a user has them
        if reason:
            with pytest.raises(inputs.InputError, match=reason):
                inputs.load_image(path, RES, 3, "pad")
        else:
            inputs.load_image(path, RES, 3, "pad")


def test_accepted_files_decode_alike_in_both_decoders(decoded, raw):
    dali, pil = decoded["dali"][1], decoded["pillow"][1]
    assert dali.keys() == pil.keys()
    for path in dali:
        diff = np.abs(dali[path].astype(int) - pil[path].astype(int))
        assert diff.mean() < 1.0 and diff.max() <= (40 if path.endswith(".jpg") else 0), path
        np.testing.assert_array_equal(pil[path], inputs.load_image(raw.parent / "src" / path, RES, 3, "pad"))


def test_exif_orientation_is_applied_by_both(decoded):
    for backend, (_, rows) in decoded.items():
        img = rows["train/rotated.jpg"]  # C×H×W; 24 wide × 12 high, turned upright: 12 wide × 24 high
        ys, xs = np.nonzero(img.any(axis=0))
        assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 27, 10, 21), backend


def test_trailing_bytes_after_a_jpeg_are_ignored(decoded):
    clean = Image.open(io.BytesIO(jpeg(noise(10, c=3))))
    want = decode_pil.transform(clean, RES, 3, "pad")
    for backend, (_, rows) in decoded.items():
        assert np.abs(rows["train/trailing.jpg"].astype(int) - want).mean() < 1.0, backend


def test_the_pixel_budget_is_read_from_the_header_before_any_decode(raw, monkeypatch):
    from PIL import ImageFile

    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or None)
    reason, pixels = imagecheck.check(raw_files(raw)["train/huge.png"], RES)
    assert "over the budget" in reason and pixels == 4200 * 4200 and loads == []
    assert imagecheck.pixel_budget(32) == 4096**2 and imagecheck.pixel_budget(512) == 8192**2


def test_on_error_fail_names_the_oversized_file(raw, tmp_path):
    with pytest.raises(DataError, match=r"train/huge.png \(4200×4200 = 17,640,000 pixels, over the budget"):
        decode(raw, tmp_path / "dec", RES, 3, on_error="fail", backend="pillow")


def test_decode_batches_are_sized_to_the_largest_image(raw, tmp_path, monkeypatch):
    seen = []
    real = decode_pil.batches

    def spy(files, **opts):
        seen.append(opts["batch_size"])
        return real(files, **opts)

    monkeypatch.setattr(decode_pil, "batches", spy)
    monkeypatch.setattr(imagecheck, "BATCH_BYTES", 4 * 24 * 20 * 2)  # room for two of the largest images
    decode(raw, tmp_path / "dec", RES, 3, on_error="skip", backend="pillow", batch_size=256)
    assert seen == [2] and len(manifest.read(raw)) == len(CASES) + 3  # + plain0, plain1, test/plain
