"""`builtin:moving-mnist`: the standard toy video benchmark, generated from the real MNIST digits.

The generator of Srivastava et al. (2015), as everyone uses it: each clip draws `digits` digits
(28×28) from the split's MNIST images, each with a random start in the free canvas, a random
direction and a constant speed of a tenth of the free canvas per frame, reflected at the borders;
the digits of a frame are combined by max. Training clips use train-split digits, held-out clips
test-split digits, so no digit image is shared between the splits.

Reproducible byte for byte: one `np.random.default_rng` per split, seeded from (seed, split), draws
every random number in a fixed order; the trajectories are computed with Python floats and
`math.sin`/`math.cos` (IEEE arithmetic and glibc's correctly rounded functions, not numpy's
CPU-dependent SIMD paths); and each clip is written as an APNG with fixed Pillow options and no
timestamps or text chunks. The frames carry no delay (a delay makes Pillow merge identical
consecutive frames, which a slow digit on a small canvas produces): browsers play such frames at
10 per second, ffmpeg (PyAV) reads them at its default of 15 per second.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np
from PIL import Image

from ul.data.fetch import builtin
from ul.data.fetch.idx import read_idx
from ul.data.layout import DataError
from ul.data.manifest import Entry
from ul.data.rawshards import Pending

DIGIT = 28  # MNIST digits are 28×28
STEP = 0.1  # the standard generator's speed: a tenth of the free canvas per frame
SPLIT_IDS = {"train": 0, "test": 1}  # the second word of each split's seed
APNG_OPTIONS = {"format": "PNG", "save_all": True, "compress_level": 6, "optimize": False}


def trajectory(rng: np.random.Generator, frames: int, canvas: int) -> list[tuple[int, int]]:
    """(y, x) top-left corners of one digit for `frames` frames inside a `canvas`-pixel free range."""
    y, x, theta = float(rng.random()), float(rng.random()), float(rng.random()) * 2 * math.pi
    vy, vx = math.sin(theta), math.cos(theta)
    out = []
    for _ in range(frames):
        y, x = y + vy * STEP, x + vx * STEP
        if y <= 0.0 or y >= 1.0:
            y, vy = min(max(y, 0.0), 1.0), -vy
        if x <= 0.0 or x >= 1.0:
            x, vx = min(max(x, 0.0), 1.0), -vx
        out.append((int(canvas * y), int(canvas * x)))
    return out


def clip(rng: np.random.Generator, digits: np.ndarray, count: int, frames: int, size: int) -> tuple[np.ndarray, int]:
    """One T×size×size uint8 clip of `count` digits drawn from `digits`, and the first digit's index."""
    picks = rng.integers(0, len(digits), count)
    out = np.zeros((frames, size, size), dtype=np.uint8)
    for k in picks:
        for t, (y, x) in enumerate(trajectory(rng, frames, size - DIGIT)):
            window = out[t, y : y + DIGIT, x : x + DIGIT]
            np.maximum(window, digits[k], out=window)
    return out, int(picks[0])


def encode_apng(frames: np.ndarray) -> bytes:
    """A T×H×W uint8 clip as a lossless, timestamp-free APNG (one plain PNG when T = 1)."""
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, append_images=images[1:], **APNG_OPTIONS)
    return buf.getvalue()


def clips(digits: np.ndarray, n: int, frames: int, size: int, count: int, seed: int, split: str) -> Iterator:
    """The split's `n` clips in order, each (T×size×size uint8, index of its first digit)."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split]])
    for _ in range(n):
        yield clip(rng, digits, count, frames, size)


class _InOrder:
    """Clips made one after another by one generator, handed out in the same order (the packer
    takes a split's files in path order, which the zero-padded names make index order)."""

    def __init__(self, made: Iterator):
        self.made, self.next = made, 0

    def open(self, i: int) -> io.BytesIO:
        if i != self.next:
            raise RuntimeError(f"clip {i} asked for before clip {self.next}")
        self.next += 1
        return io.BytesIO(encode_apng(next(self.made)[0]))


def files(frames: int, cfg, limits: dict[str, int]) -> tuple[list[Pending], list[str]]:
    """The `<split>/<index>.png` clips (unlabelled, index zero-padded to at least 5 digits), made
    as they are packed; `cfg` = data.moving_mnist.

    `limits[split]` > 0 keeps at most that many of the split's clips (a prefix)."""
    if frames <= 0:
        raise DataError(
            "builtin:moving-mnist makes video clips: set data.frames to the clip length (e.g. data.frames=16)"
        )
    if not DIGIT <= cfg.size:
        raise DataError(f"data.moving_mnist.size={cfg.size}: must be at least {DIGIT} (the digits are 28×28)")
    folder = builtin._mnist_dir()
    pending: list[Pending] = []
    for split, (img_file, _) in builtin.FILES.items():
        digits = read_idx(folder / img_file)
        n = cfg.train_clips if split == "train" else cfg.test_clips
        n = min(n, limits[split]) if limits[split] > 0 else n
        made = _InOrder(clips(digits, n, frames, cfg.size, cfg.digits, cfg.seed, split))
        width = max(5, len(str(n - 1)))
        for i in range(n):
            pending.append(
                Pending(Entry(f"{split}/{i:0{width}d}.png", split, None, "", 0), lambda i=i, m=made: m.open(i))
            )
    return pending, []
