"""Ordinary images are read, by one policy everywhere: WebP, BMP, TIFF, still GIF, palette PNG,
PNG with alpha (flattened under data.background=white|black, else refused with the option named),
CMYK and grey JPEG; an animation or a multipage file is refused in one clear line. The decode stage
and `ul.inputs` give the same pixels for the same file."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from datahelpers import noise, write_folder
from PIL import Image

from ul import inputs
from ul.common.shards import ShardReader
from ul.data.decode import imagecheck
from ul.data.decode.images import decode
from ul.data.fetch.sources import fetch


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb(seed: int, size=(24, 20)) -> Image.Image:
    return Image.fromarray(noise(seed, size[1], size[0], 3))


def _half_transparent(seed: int) -> Image.Image:
    im = _rgb(seed).convert("RGBA")
    alpha = np.full((20, 24), 255, np.uint8)
    alpha[:, :12] = 0  # the left half fully transparent
    im.putalpha(Image.fromarray(alpha))
    return im


ORDINARY = {
    "a.webp": lambda: _save(_rgb(1), "WEBP", lossless=True),
    "b.bmp": lambda: _save(_rgb(2), "BMP"),
    "c.tif": lambda: _save(_rgb(3), "TIFF"),
    "d.gif": lambda: _save(_rgb(4).convert("P"), "GIF"),
    "e.png": lambda: _save(_rgb(5).convert("P"), "PNG"),  # palette PNG
    "f.jpg": lambda: _save(_rgb(6).convert("CMYK"), "JPEG", quality=95),
    "g.jpg": lambda: _save(_rgb(7).convert("L"), "JPEG", quality=95),
    "h.png": lambda: _save(_half_transparent(8), "PNG"),
    "i.webp": lambda: _save(_half_transparent(9), "WEBP", lossless=True),
}


def test_every_ordinary_format_passes_the_policy_and_transparency_names_the_option():
    for name, make in ORDINARY.items():
        data = make()
        transparent = name in ("h.png", "i.webp")
        reason = imagecheck.quick(data, 32)
        if transparent:
            assert reason and "data.background=white or black" in reason, name
        else:
            assert reason is None, (name, reason)
        assert imagecheck.quick(data, 32, "white") is None, name
    assert imagecheck.dali_reads(ORDINARY["g.jpg"]()) and not imagecheck.dali_reads(ORDINARY["a.webp"]())
    assert not imagecheck.dali_reads(ORDINARY["f.jpg"]())  # CMYK: Pillow's conversion, not a guess


@pytest.mark.parametrize(
    "data, words",
    [
        (lambda: _save(_rgb(1), "TIFF", save_all=True, append_images=[_rgb(2)]), "TIFF of 2 frames"),
        (
            lambda: _save(_rgb(1).convert("P"), "GIF", save_all=True, append_images=[_rgb(3).convert("P")]),
            "GIF of 2 frames",
        ),
        (lambda: _save(_rgb(1), "PPM"), "unsupported format PPM"),
        (lambda: b"\x00\x01 not an image at all", "not an image Pillow can identify"),
        (lambda: _save(Image.fromarray(np.full((8, 8), 40000, np.uint16)), "TIFF"), "not 8 bits per channel"),
    ],
)
def test_what_is_refused_is_refused_in_words(data, words):
    reason = imagecheck.quick(data(), 32)
    assert reason and words in reason and "<" not in reason and "0x" not in reason, reason  # never an object repr


@pytest.mark.parametrize("background, fill", [("white", 255), ("black", 0)])
def test_the_decode_stage_and_ul_inputs_read_every_ordinary_file_alike(tmp_path, background, fill):
    src = write_folder(tmp_path / "src", {name: make() for name, make in ORDINARY.items()})
    fetch(f"file://{src}", tmp_path / "raw")
    m = decode(tmp_path / "raw", tmp_path / "dec", 32, 3, "resize", device="cpu", background=background)
    assert sum(m["images"].values()) == len(ORDINARY) and m["skipped"] == 0
    assert m["backend"] == "pillow" and ("pillow_because" in m) == ("dali_import_error" not in m)  # said why
    decoded = {}
    for split in ("train", "test"):
        paths = (tmp_path / "dec" / split / "paths.txt").read_text().split()
        rows = ShardReader(tmp_path / "dec" / split)
        decoded.update({p.split("/", 1)[1] if "/" in p else p: rows[[k]][0] for k, p in enumerate(paths)})
    for name in ORDINARY:
        mine = inputs.load_image(src / name, 32, 3, "resize", background)
        np.testing.assert_array_equal(decoded[name], mine, err_msg=name)
    left = decoded["h.png"][:, :, :8]  # the transparent half, scaled: the background colour
    assert np.all(left == fill), left.mean()
    with pytest.raises(inputs.InputError, match="data.background=white or black"):
        inputs.load_image(src / "h.png", 32, 3, "resize")  # refuse: the default


def test_a_transparent_image_stops_the_default_decode_naming_the_option(tmp_path):
    files = {f"{k}.png": _save(_rgb(k), "PNG") for k in range(4)}
    files["t.png"] = ORDINARY["h.png"]()
    src = write_folder(tmp_path / "src", files)
    fetch(f"file://{src}", tmp_path / "raw")
    with pytest.raises(Exception, match=r"t\.png \(has transparent pixels \(alpha\); set data.background=white"):
        decode(tmp_path / "raw", tmp_path / "dec", 32, 3, device="cpu")
    m = decode(tmp_path / "raw", tmp_path / "dec", 32, 3, device="cpu", on_error="skip")
    skipped = json.loads((tmp_path / "dec" / "skipped.json").read_text())
    assert m["skipped"] == 1 and "data.background" in skipped[0]["reason"]
