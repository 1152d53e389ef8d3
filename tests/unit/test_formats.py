"""Ordinary images are read, by one policy everywhere: WebP, BMP, TIFF, still GIF, palette PNG,
PNG with alpha (flattened under data.background=white|black, else refused with the option named),
CMYK and grey JPEG; an animation or a multipage file is refused in one clear line. The pixels stage
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
from ul.data.fetch.sources import fetch
from ul.data.pixels import imagecheck
from ul.data.pixels.images import decode


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
def test_the_pixels_stage_and_ul_inputs_read_every_ordinary_file_alike(tmp_path, background, fill):
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


def _layout(mode: str, fmt: str, **kw) -> bytes:
    im = _rgb(11)
    if mode in ("LA", "RGBA"):
        im = im.convert(mode)  # opaque alpha: dropped, not refused
    elif mode == "P4":
        im, kw = im.convert("P", colors=16), {**kw, "bits": 4}
    elif mode == "L2":
        im, kw = im.convert("L"), {**kw, "bits": 2}
    elif mode.endswith("t"):  # a tRNS colour key that no pixel has: transparency declared, all opaque
        im = im.convert(mode[:-1], colors=255) if mode == "Pt" else im.convert(mode[:-1])
        kw = {**kw, "transparency": {"Lt": 7, "Pt": 255, "RGBt": (7, 7, 7)}[mode]}
    elif mode == "I;16":
        im = Image.fromarray(np.full((20, 24), 40000, np.uint16))
    else:
        im = im.convert(mode)
    return _save(im, fmt, **kw)


LAYOUTS = [
    *((m, "PNG") for m in ("1", "L", "L2", "P", "P4", "LA", "RGB", "RGBA", "Lt", "Pt", "RGBt", "I;16")),
    *((m, "JPEG") for m in ("L", "RGB", "CMYK", "YCbCr")),
    *((m, "BMP") for m in ("1", "L", "P", "RGB", "RGBA")),
    *((m, "TIFF") for m in ("1", "L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16")),
    *((m, "WEBP") for m in ("RGB", "RGBA")),
    *((m, "GIF") for m in ("L", "P")),
]


@pytest.mark.parametrize("mode, fmt", LAYOUTS)
def test_every_layout_is_taken_or_refused_alike_by_the_stage_and_the_api(tmp_path, mode, fmt):
    """One policy: what the pixels stage accepts (imagecheck) ul.inputs reads, from a file and as a
    PIL image, with the same pixels; what it refuses both refuse."""
    data = _layout(mode, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    stage_takes = imagecheck.quick(data, 32) is None
    try:
        mine = inputs.load_image(path, 32, 3, "pad")
    except inputs.InputError:
        mine = None
    assert (mine is not None) == stage_takes, (mode, fmt, imagecheck.quick(data, 32))
    with Image.open(io.BytesIO(data)) as im:
        try:
            pil_image = inputs.from_pil(im, 32, 3, "pad")
        except inputs.InputError:
            pil_image = None
    assert (pil_image is not None) == stage_takes, (mode, fmt)
    if stage_takes:
        from ul.common.images import to_uint8

        np.testing.assert_array_equal(to_uint8(pil_image)[0], mine)


def test_the_pixel_budget_follows_the_resolution_in_the_stage_and_the_api(tmp_path):
    big = Image.new("L", (7000, 7000))  # 49 MP: over the 16.8 MP floor, within (16·512)²
    path = tmp_path / "big.png"
    big.save(path)
    for resolution, takes in ((32, False), (512, True)):
        assert (imagecheck.quick(path.read_bytes(), resolution) is None) == takes
        if takes:
            assert inputs.load_image(path, resolution, 1, "pad").shape == (1, resolution, resolution)
            assert inputs.from_pil(big, resolution, 1, "pad").shape == (1, 1, resolution, resolution)
        else:
            with pytest.raises(inputs.InputError, match="over the budget"):
                inputs.load_image(path, resolution, 1, "pad")
            with pytest.raises(inputs.InputError, match="over the budget"):
                inputs.from_pil(big, resolution, 1, "pad")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])  # the formats DALI reads, alone in a folder so DALI gets them
def test_the_pixels_stage_reads_every_accepted_layout_as_the_api_does(tmp_path, fmt):
    files = {f"{m}.{fmt.lower()}": _layout(m, fmt) for m, f in LAYOUTS if f == fmt and m != "CMYK"}  # CMYK: Pillow
    files = {n: d for n, d in files.items() if imagecheck.quick(d, 32) is None}
    src = write_folder(tmp_path / "src", files)
    fetch(f"file://{src}", tmp_path / "raw")
    m = decode(tmp_path / "raw", tmp_path / "dec", 32, 3, "pad", device="cpu")
    assert sum(m["images"].values()) == len(files) and m["skipped"] == 0
    assert m["backend"] == ("dali" if "dali_import_error" not in m else "pillow")
    for split in ("train", "test"):
        rows = ShardReader(tmp_path / "dec" / split)
        for k, p in enumerate((tmp_path / "dec" / split / "paths.txt").read_text().split()):
            name = p.split("/", 1)[1] if "/" in p else p
            mine = inputs.load_image(src / name, 32, 3, "pad")
            assert np.abs(rows[[k]][0].astype(int) - mine).max() <= (1 if fmt == "JPEG" else 0), (m["backend"], name)
