"""A user's images → model input, exactly as the pixels stage prepares training data.

Files go through the pixels stage's Pillow path (`ul.data.pixels.pil.transform`: the same channel
conversion and the same centre pad/crop or resize as DALI), then `images.from_uint8` to [-1, 1];
for a video model, video files go through the pixels stage's PyAV path (`ul.data.pixels.pyav`).
Every failure is an `InputError` that names the input and the reason.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ul.common.images import from_uint8
from ul.data.fetch.folder import IMAGE_SUFFIXES, VIDEO_SUFFIXES  # noqa: F401 (VIDEO_SUFFIXES: for ul.commands)
from ul.data.pixels import imagecheck, pil

SUFFIXES = IMAGE_SUFFIXES  # the files the fetch stage takes from a folder (VIDEO_SUFFIXES for video)


class InputError(ValueError):
    """An input file or array is unusable; the message names it and says why."""


def list_images(args: Iterable[str | Path], suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    """Files named on a command line: each argument is an image file or a folder, whose regular
    image files (`suffixes`; not links, not sub-folders) are taken in name order."""
    return list_inputs(args, suffixes)[0]


def list_inputs(args: Iterable[str | Path], suffixes: tuple[str, ...] = SUFFIXES) -> tuple[list[Path], int]:
    """`list_images`, and how many regular files of other kinds the folders held (left out)."""
    found: list[Path] = []
    others = 0
    for arg in args:
        path = Path(arg)
        try:
            st = os.stat(path)
        except OSError as err:
            raise InputError(f"{arg}: {err.strerror or 'cannot read'}") from None
        if stat.S_ISDIR(st.st_mode):
            regular = [Path(e.path) for e in os.scandir(path) if e.is_file(follow_symlinks=False)]
            files = sorted(f for f in regular if f.suffix.lower() in suffixes)
            others += len(regular) - len(files)
            if not files:
                raise InputError(f"{arg}: no {'/'.join(suffixes)} files in this folder")
            found += files
        elif stat.S_ISREG(st.st_mode):
            found.append(path)
        else:  # a pipe or a device would block or never end
            raise InputError(f"{arg}: not a regular file or folder")
    if not found:
        raise InputError("no input images given")
    return found, others


def load_image(
    path: str | Path, resolution: int, channels: int, resize_mode: str, background: str = "refuse"
) -> np.ndarray:
    """One image file → uint8 C×resolution×resolution, checked before it is decoded, by the decode
    stage's policy (ul.data.pixels.imagecheck; `background`: data.background for transparency)."""
    try:
        if (size := os.stat(path).st_size) > imagecheck.MAX_FILE_BYTES:  # read whole below: a bomb stops here
            raise InputError(f"{path}: {size:,} bytes; an image file is at most {imagecheck.MAX_FILE_BYTES:,}")
        data = Path(path).read_bytes()  # a regular file (list_images): a pipe or device never gets here
    except OSError as err:
        raise InputError(f"{path}: {err.strerror or 'cannot read'}") from None
    return image_from_bytes(data, str(path), resolution, channels, resize_mode, background)


def image_from_bytes(
    data: bytes, name: str, resolution: int, channels: int, resize_mode: str, background: str = "refuse"
) -> np.ndarray:
    """An image file's bytes (`name` for messages) → uint8 C×resolution×resolution, by the same policy."""
    reason = imagecheck.quick(data, resolution, background)  # the pixel budget and image policy of the pixels stage
    if reason:
        raise InputError(f"{name}: unreadable image ({reason})")
    try:
        with Image.open(io.BytesIO(data)) as im:  # passed the stage's policy above: nothing else to refuse
            return pil.transform(im, resolution, channels, resize_mode, background)
    except Exception as err:  # Pillow raises many types for a damaged file
        raise InputError(f"{name}: unreadable image ({type(err).__name__}: {err})".splitlines()[0]) from None


def transform_text(data) -> str:
    """The transform every input goes through (a model's data config), in words."""
    how = {
        "pad": "centre pad or crop, no resampling",
        "resize": "shorter side scaled, then centre crop",
    }.get(data.resize_mode, data.resize_mode)
    size = f"{data.resolution}×{data.resolution}"
    clip = f", the first {data.frames} frames" if data.frames else ""
    return f"{data.channels} channel(s), {size} ({data.resize_mode}: {how}){clip}, as the model's training data"


def load_clip(path: str | Path, frames: int, fps: float, resolution: int, channels: int, resize_mode: str):
    """A video file → uint8 C×T×H×W, exactly as the pixels stage reads it; InputError names the file."""
    from ul.data.pixels import pyav

    try:
        return pyav.load(str(path), frames, fps, resolution, channels, resize_mode)
    except pyav.ClipError as err:
        raise InputError(f"{path}: {err}") from None


def from_pil(
    im: Image.Image, resolution: int, channels: int, resize_mode: str, background: str = "refuse"
) -> torch.Tensor:
    """A PIL image → 1×C×H×W float in [-1, 1]; transparency as `background` says (data.background)."""
    w, h = im.size  # the pixels stage's policy (ul.data.pixels.imagecheck), on an image already open
    if w * h > imagecheck.pixel_budget(resolution):
        raise InputError(f"image: {w}×{h} pixels, over the budget of {imagecheck.pixel_budget(resolution):,}")
    if im.mode not in imagecheck.MODES:
        raise InputError(f"image: mode {im.mode}, not 8 bits per channel; convert it to 8-bit grey or RGB")
    if background == "refuse" and imagecheck.has_alpha(im.mode, im.info):
        if im.convert("RGBA").getchannel("A").getextrema()[0] < 255:
            raise InputError("image: has transparent pixels (alpha); pass background='white' or 'black' to flatten it")
    return from_uint8(pil.transform(im, resolution, channels, resize_mode, background)[None])


def from_arrays(images: np.ndarray, channels: int) -> torch.Tensor:
    """uint8 N×C×H×W (or N×H×W×C) arrays → float N×C×H×W in [-1, 1]; C must be the model's."""
    a = np.asarray(images)
    if a.dtype != np.uint8 or a.ndim != 4:
        raise InputError(f"arrays: expected uint8 N×C×H×W, got {a.dtype} with shape {a.shape}")
    if a.shape[1] != channels and a.shape[3] == channels:
        a = a.transpose(0, 3, 1, 2)
    if a.shape[1] != channels:
        raise InputError(f"arrays: {a.shape[1]} channels, the model takes {channels}")
    return from_uint8(np.ascontiguousarray(a))
