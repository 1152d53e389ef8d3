"""The Pillow decoder: the fallback when DALI cannot be imported, and the reference it is tested against.

It reproduces DALI's geometry exactly (`fn.crop` places the window at `0.5·(size − crop)`, rounded
half away from zero, and pads with 0), decodes JPEG luminance directly for grey output as
libjpeg-turbo does in DALI, and converts colour PNGs to grey with integer BT.601 weights (DALI's
own conversion differs from it by at most 1 level on about 0.3% of such pixels). `resize` uses
Pillow's antialiased bilinear filter, close to but not bit-identical with DALI's.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

from ul.data.layout import BackendError
from ul.data.pixels import imagecheck
from ul.data.rawshards import Selection


def _round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def crop_or_pad(img: np.ndarray, size: int) -> np.ndarray:
    """Centre an H×W×C image in a size×size window, cropping or zero-padding each axis."""
    h, w, c = img.shape
    oy, ox = _round_half_away(0.5 * (h - size)), _round_half_away(0.5 * (w - size))
    out = np.zeros((size, size, c), dtype=np.uint8)
    ys, xs = slice(max(oy, 0), min(oy + size, h)), slice(max(ox, 0), min(ox + size, w))
    out[ys.start - oy : ys.stop - oy, xs.start - ox : xs.stop - ox] = img[ys, xs]
    return out


def _to_array(im: Image.Image, channels: int) -> np.ndarray:
    if channels == 3:
        return np.asarray(im.convert("RGB"))
    if im.mode == "L":
        return np.asarray(im)[:, :, None]
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint32)
    return ((rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) // 1000).astype(np.uint8)[:, :, None]


def resize_shorter(img: np.ndarray, size: int) -> np.ndarray:
    """Scale an H×W×C image so its shorter side is `size` (antialiased bilinear, like fn.resize)."""
    h, w, c = img.shape
    scale = size / min(h, w)
    new = (max(1, _round_half_away(w * scale)), max(1, _round_half_away(h * scale)))
    out = np.asarray(Image.fromarray(img[:, :, 0] if c == 1 else img).resize(new, Image.Resampling.BILINEAR))
    return out.reshape(new[1], new[0], c)


def load(data: bytes, resolution: int, channels: int, resize_mode: str, background: str = "refuse") -> np.ndarray:
    """Decode one file's bytes to uint8 C×resolution×resolution."""
    with Image.open(io.BytesIO(data)) as im:
        return transform(im, resolution, channels, resize_mode, background)


def flatten(im: Image.Image, background: str) -> Image.Image:
    """An image with an alpha channel (or a transparent palette entry) composited onto the
    `background` colour (data.background: white | black); others, and "refuse", unchanged (the
    check has refused the transparent ones by then)."""
    colour = imagecheck.BACKGROUNDS.get(background)
    if colour is None or not imagecheck.has_alpha(im.mode, im.info):
        return im
    rgba = im.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (*colour, 255)), rgba).convert("RGB")


def transform(
    im: Image.Image, resolution: int, channels: int, resize_mode: str, background: str = "refuse"
) -> np.ndarray:
    """An opened image to uint8 C×resolution×resolution: the training-time channel and geometry rules."""
    if channels == 1 and im.format == "JPEG" and im.mode != "CMYK":
        im.draft("L", im.size)  # luminance straight from the decoder, no colour round trip
    im = flatten(ImageOps.exif_transpose(im), background)  # EXIF orientation applied, as DALI's decoder does
    arr = _to_array(im, channels)
    if resize_mode == "resize":
        arr = resize_shorter(arr, resolution)
    return crop_or_pad(arr, resolution).transpose(2, 0, 1)


def batches(
    files: Selection,
    resolution: int,
    channels: int,
    resize_mode: str,
    threads: int,
    batch_size: int,
    device: str = "cpu",
    background: str = "refuse",
) -> Iterator[np.ndarray]:
    """Yield N×C×H×W uint8 batches of the selected files in order; a failure raises BackendError."""

    def one(k: int) -> np.ndarray:
        try:
            return load(files.read(k), resolution, channels, resize_mode, background)
        except Exception as err:
            raise BackendError(k, f"{files.name(k)}: {type(err).__name__}: {err}") from err

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for start in range(0, len(files), batch_size):
            yield np.stack(list(pool.map(one, range(start, min(start + batch_size, len(files))))))
