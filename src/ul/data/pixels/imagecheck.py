"""Find unreadable images (their bytes) before (and, if needed, after) the batch decoder sees them.

DALI reports a failure per batch, not per file, and stops the pipeline; checking files first is
what lets the pixels stage name the bad file and, with `on_error=skip`, leave it out. `quick` is cheap
(headers, PNG chunk CRCs, the JPEG end marker); `full` decodes every pixel and is used only on
the files of a batch that DALI rejected although they passed `quick`.

One policy for both decoders (DALI and Pillow), applied here before either sees a file:
- size: width × height within `pixel_budget(resolution)`, read from the header before any pixel
  is decoded (a small PNG can declare a huge canvas); the pixels stage also sizes its batches so
  that a batch of the largest images stays within `BATCH_BYTES`.
- 16-bit PNGs are refused (the decoders would clip or rescale them differently); convert to 8 bits.
- formats: PNG and JPEG (read by DALI and Pillow), and WebP, BMP, TIFF and GIF (read by Pillow;
  `dali_reads` says which files DALI takes). A file of several frames (an animated GIF or WebP, a
  multipage TIFF) is refused: which frame is meant is the user's choice.
- transparency: an alpha channel (or a transparent palette entry) that is fully opaque is dropped,
  as both decoders do; an image with any transparent pixel is refused under data.background=refuse
  (dropping its alpha would show whatever colour the transparent pixels happen to hold), or
  flattened onto white or black (`data.background`, Pillow's alpha compositing).
- layouts: 8 bits per channel (grey, palette, RGB, CMYK JPEG); 16-bit and float images are refused.
- EXIF orientation is applied by both (DALI's `adjust_orientation`, `ImageOps.exif_transpose`).
- a JPEG must reach its end-of-image marker through its segments and scans; bytes after it are
  ignored, as every decoder ignores them. Its entropy-coded data must also hold every block of the
  image: libjpeg (under DALI and Pillow alike) fills the blocks of a scan that ends early with flat
  grey and only warns, so a cut file with an end marker appended would pass as an image. The check
  decodes it with libjpeg-turbo in strict mode (simplejpeg), where that warning is an error, at 1/8
  scale: the whole entropy decode, little of the rest.
"""

from __future__ import annotations

import io

from PIL import Image

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
DALI_FORMATS = ("PNG", "JPEG")  # what this pipeline hands DALI; the others go through Pillow
MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "PA", "La", "RGBa", "CMYK")  # 8 bits per channel
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}  # data.background, beside "refuse"
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


def has_alpha(mode: str, info: dict) -> bool:
    """An alpha channel or a transparent palette entry (maybe fully opaque: `_transparency` says)."""
    return mode in ALPHA_MODES or "transparency" in info


BUDGET_SCALE = 16  # an image may be up to 16× the training resolution per side ...
MIN_BUDGET = 4096 * 4096  # ... and always up to 16.8 megapixels
MAX_FILE_BYTES = 1 << 28  # an image file is read whole; 16.8 megapixels need far fewer bytes
BATCH_BYTES = 1 << 30  # decoded pixels of one decode batch (4 bytes per pixel, the widest layout)


def pixel_budget(resolution: int) -> int:
    """The most pixels (width × height) an input image may have for a model of this resolution."""
    return max(MIN_BUDGET, (BUDGET_SCALE * int(resolution)) ** 2)


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}".strip().rstrip(":")


def check(data: bytes, resolution: int | None = None, background: str = "refuse") -> tuple[str | None, int]:
    """(None if `data` is a complete, acceptable image else the reason in words, its pixel count)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h), mode, info = im.format, im.size, im.mode, dict(im.info)
            frames = getattr(im, "n_frames", 1)
            if resolution and w * h > pixel_budget(resolution):  # before any pixel is decoded
                return (
                    f"{w}×{h} = {w * h:,} pixels, over the budget of {pixel_budget(resolution):,} "
                    f"for resolution {resolution}; downscale it first"
                ), w * h
            im.verify()  # PNG: walks every chunk and checks its CRC; JPEG: headers only
    except Image.UnidentifiedImageError:
        return "not an image Pillow can identify (PNG, JPEG, WebP, BMP, TIFF and GIF are read)", 0
    except Exception as err:  # Pillow raises many types (SyntaxError, OSError, struct.error, ...)
        return _describe(err), 0
    if fmt not in FORMATS:
        return f"unsupported format {fmt} (PNG, JPEG, WebP, BMP, TIFF and GIF are read); convert it to PNG", w * h
    if w == 0 or h == 0:
        return f"empty image ({w}x{h})", 0
    if frames > 1:
        return (
            f"{fmt} of {frames} frames (an animation or a multipage file); save the one frame you mean as an image",
            w * h,
        )
    if fmt == "JPEG":
        return _jpeg_structure(data) or _jpeg_entropy(data), w * h
    if fmt == "PNG" and _png_bit_depth(data) == 16:
        return "16-bit PNG (the decoders would clip or rescale it differently); convert it to 8 bits", w * h
    if mode not in MODES:
        return f"{fmt} in mode {mode}, not 8 bits per channel; convert it to 8-bit grey or RGB", w * h
    if fmt not in DALI_FORMATS and (reason := full(data)):
        return reason, w * h
    if has_alpha(mode, info):
        return (_transparency(data) if background == "refuse" else None), w * h
    return None, w * h


def dali_reads(data: bytes) -> bool:
    """Whether DALI decodes this (acceptable) file as Pillow would: PNG or JPEG, not CMYK, nothing
    to flatten. The others go through Pillow."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            alpha = has_alpha(im.mode, im.info)
            return im.format in DALI_FORMATS and im.mode != "CMYK" and not (alpha and _transparency(data))
    except Exception:
        return False


def quick(data: bytes, resolution: int | None = None, background: str = "refuse") -> str | None:
    """None if `data` is a complete, acceptable image, else the reason it is not."""
    return check(data, resolution, background)[0]


def _png_bit_depth(data: bytes) -> int:
    return data[24] if len(data) >= 26 and data[12:16] == b"IHDR" else 8


def _transparency(data: bytes) -> str | None:
    """None when every pixel is opaque (the alpha can be dropped without changing the image)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            alpha = im.convert("RGBA").getchannel("A")
            lo, _ = alpha.getextrema()
    except Exception as err:
        return _describe(err)
    if lo < 255:
        return "has transparent pixels (alpha); set data.background=white or black to flatten it, or flatten it first"
    return None


def _jpeg_structure(data: bytes) -> str | None:
    """Walk the JPEG's segments and entropy-coded scans to its end-of-image marker."""
    n, i = len(data), 2
    while i < n:
        if data[i] != 0xFF:
            return "corrupt JPEG (bytes where a marker is due)"
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == 0xD9:
            return None  # end of image; anything after it is ignored by every decoder
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if i + 2 > n:
            break
        i += int.from_bytes(data[i : i + 2], "big")
        if marker == 0xDA:  # a scan: entropy-coded data up to the next marker that is not FF00 or RSTn
            while True:
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    return "truncated JPEG (no end-of-image marker)"
                nxt = data[i + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    i += 1 if nxt == 0xFF else 2
                    continue
                break
    return "truncated JPEG (no end-of-image marker)"


def _jpeg_entropy(data: bytes) -> str | None:
    """Decode every block in strict mode (see the module docstring); None when all are there."""
    import simplejpeg

    try:
        space = simplejpeg.decode_jpeg_header(data)[2]
        out = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}.get(space, "RGB")
        simplejpeg.decode_jpeg(data, colorspace=out, strict=True, min_height=1, min_width=1)
    except ValueError as err:
        return f"corrupt JPEG ({str(err).strip().rstrip('.')})"
    return None


def full(data: bytes) -> str | None:
    """None if every pixel of `data` decodes, else the reason."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as err:
        return _describe(err)
    return None
