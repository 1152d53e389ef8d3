"""The models a `ul serve` page shows, each loaded once, and the work done on them: an image put
through every autoencoder (its input after the model's own training-time transform, the
reconstruction, the bits, the PSNR), samples from a generator pair, and the model cards.

Images travel as PNG bytes; results are plain dicts, ready to be JSON.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ul import inputs
from ul.api import Autoencoder, LatentDiffusion
from ul.artifacts import export
from ul.common.errors import ExportError
from ul.common.images import from_uint8, png_bytes
from ul.common.shards import ShardReader
from ul.core import rng
from ul.core.model import BaseModel
from ul.eval.psnr import psnr_db

DRAWS = 4  # prior noise draws per rate estimate


@dataclass
class Served:
    """One stage-1 export (and its stage-2 partner, when the folder beside it has one)."""

    name: str
    folder: Path
    ae: Autoencoder
    stage2: Path | None
    generator: LatentDiffusion | None = None  # loaded at the first sample, then kept

    @property
    def transform(self) -> str:
        return inputs.transform_text(self.ae.config.data)


def find(paths: list[str | Path]) -> list[Path]:
    """Stage-1 export folders from the arguments: an export folder itself, or a folder holding
    `stage1/` (as `models/` and `ul export` bundles do)."""
    found = []
    for p in map(Path, paths):
        folder = p / "stage1" if (p / "stage1" / export.CONFIG).is_file() else p
        if not (folder / export.CONFIG).is_file():
            raise ExportError(f"{p}: neither an export folder nor a folder holding stage1/")
        found.append(folder)
    if len(set(found)) != len(found):
        raise ExportError("the same model is named twice")
    return found


def load(folders: list[Path], device: str = "cpu") -> list[Served]:
    """Each export loaded once (image models only: the page shows images)."""
    served = []
    for folder in folders:
        ae = Autoencoder.load(folder, device=device)
        if ae.config.data.frames:
            raise ExportError(f"{folder}: a video model; the page shows image models")
        stage2 = folder.parent / "stage2"
        name = folder.resolve().parent.name if folder.name == "stage1" else folder.name
        served.append(Served(name, folder, ae, stage2 if (stage2 / export.CONFIG).is_file() else None))
    return served


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def reconstruct_all(served: list[Served], data: bytes, name: str, seed: int, steps: int, background: str) -> dict:
    """The image through every model, ordered by bits per image; a model whose policy refuses the
    image (transparency, its pixel budget) says why in its row, the others still answer."""
    rows = []
    for s in served:
        d = s.ae.config.data
        try:
            arr = inputs.image_from_bytes(data, name, d.resolution, d.channels, d.resize_mode, background)
        except inputs.InputError as err:
            rows.append({"model": s.name, "error": str(err)})
            continue
        x = from_uint8(arr[None]).to(s.ae.device)
        gens = rng.per_example(seed, 0, 1)
        with torch.no_grad():
            bits = float(s.ae.rate(x, DRAWS, generator=rng.per_example(seed, 0, 1))[0])
            rec = s.ae.reconstruct(x, steps, generator=gens).cpu()
        rows.append(
            {
                "model": s.name,
                "transform": s.transform,
                "input": data_url(png_bytes(arr[None], nrow=1, pad=0)),
                "reconstruction": data_url(png_bytes(rec, nrow=1, pad=0)),
                "bits_per_image": bits,
                "bits_per_pixel": bits / math.prod(s.ae.image_shape[1:]),
                "psnr_db": float(psnr_db(rec.add(1).div(2), x.cpu().add(1).div(2))[0]),  # as evaluation does
            }
        )
    if all("error" in r for r in rows):
        raise inputs.InputError(rows[0]["error"])
    rows.sort(key=lambda r: (r.get("bits_per_image", math.inf), r["model"]))
    return {"seed": seed, "steps": steps, "rows": rows}


def sample(s: Served, n: int, seed: int, steps: int) -> dict:
    """`n` samples of the generator pair (stage 1 + its stage 2) as one grid."""
    if s.stage2 is None:
        raise ExportError(f"{s.name}: no stage2/ beside {s.folder}: nothing to sample with")
    if s.generator is None:
        s.generator = LatentDiffusion(s.ae, export.load(s.stage2, s.ae.device, expect=BaseModel)[0])
    with torch.no_grad():
        x = s.generator.sample(n, steps, steps, generator=rng.per_example(seed, 0, n)).cpu()
    return {"model": s.name, "seed": seed, "grid": data_url(png_bytes(x, nrow=min(n, 8)))}


def card(s: Served) -> str:
    path = s.folder / export.CARD
    return path.read_text(encoding="utf-8") if path.is_file() else "(no model card)"


def held_out(root: Path, count: int = 8) -> list[np.ndarray]:
    """The first `count` images of the pipeline's held-out split (data/pixels/test), if there."""
    folder = root / "data" / "decoded" / "test"
    if not (folder / "index.json").is_file():
        return []
    reader = ShardReader(folder)
    return [reader[[k]][0] for k in range(min(count, len(reader)))]
