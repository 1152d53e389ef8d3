"""`ul encode | decode | reconstruct | rate | sample | info | export`: a trained model on a user's own files.

Each command validates every input before it writes anything, writes its outputs atomically (a
folder appears complete or not at all), shows a progress bar on long work, and reports bad input
as one `error:` line naming the input and the reason, with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ul import inputs
from ul.api import Autoencoder, LatentDiffusion
from ul.artifacts import export, model_card
from ul.artifacts.export import ExportError
from ul.common import atomic, npz
from ul.common.atomic import new_dir
from ul.common.config_checks import PRECISIONS
from ul.common.device import resolve_device
from ul.common.errors import report
from ul.common.images import display_scale, from_uint8, png_bytes, save_grid, save_pairs_grid
from ul.core import rng, samplers

LATENT_KEYS = ("z_clean", "names", "model_sha256", "logsnr0")


class CommandError(ValueError):
    """A command's own input or output is unusable; the message names it."""


def _parser(name: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"ul {name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="models/stage1", help="stage-1 export folder (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="(default: %(default)s)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32, bf16 (autocast; fast where the hardware has bf16) or auto (bf16 where native) (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="images per forward pass; memory is bounded by it, results do not depend on it (default: %(default)s)",
    )
    return p


def _images(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "images",
        nargs="+",
        help="image files (PNG, JPEG, WebP, BMP, TIFF, GIF) and/or folders of them (their regular files); for a video model, video "
        "files (.mp4 .webm .avi .mkv .mov .gif, animated .png), each read as its first data.frames frames",
    )


def _sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=50, help="decoder sampler steps (default: %(default)s)")
    p.add_argument("--sampler", default="dpm2m", choices=tuple(samplers.STEPS), help="(default: %(default)s)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of every noise draw; each input draws from its own generator, derived from the seed and "
        "its place in the input list (default: %(default)s)",
    )


def _autoencoder(args) -> Autoencoder:
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {args.batch_size}")
    return Autoencoder.load(args.model, resolve_device(args.device), args.precision)


@dataclass
class Batch:
    """Some inputs, read: their files, their place in the input list, their [-1, 1] images."""

    files: list[Path]
    index: list[int]
    x: torch.Tensor

    def generators(self, seed: int) -> list[torch.Generator]:
        """One generator per input, from the seed and the input's place (ul.core.rng)."""
        return [rng.per_example(seed, i, 1)[0] for i in self.index]


class Inputs:
    """What a command reads, a batch at a time (memory bounded by the batch): the inputs the
    arguments name, the refused ones with why, and how many files of other kinds the folders held
    (left out, never silently). Outputs go to a staging place, so a run that finds no readable
    input, or fails, leaves nothing behind."""

    def __init__(self, ae: Autoencoder, paths: list[str]):
        self.data = ae.config.data
        self.video = bool(self.data.frames)  # a video model reads video files, each as its first data.frames frames
        suffixes = inputs.VIDEO_SUFFIXES if self.video else inputs.SUFFIXES
        self.listed, self.others = inputs.list_inputs(paths, suffixes)
        self.read: list[Path] = []
        self.refused: list[tuple[Path, str]] = []
        self.transform = inputs.transform_text(self.data)

    def batches(self, size: int, desc: str) -> Iterator[Batch]:
        """The readable inputs in batches of `size`, in the order given; none readable is an error
        (raised after the last batch, before any output is kept)."""
        files, index, arrays = [], [], []
        unit = "clip" if self.video else "img"
        with tqdm(total=len(self.listed), desc=desc, unit=unit, disable=None) as bar:  # no bar text off a terminal
            for i, f in enumerate(self.listed):
                try:
                    arrays.append(self._load(f))
                    files.append(f)
                    index.append(i)
                except inputs.InputError as err:
                    self.refused.append((f, str(err).removeprefix(f"{f}: ")))
                if len(arrays) == size or (arrays and i == len(self.listed) - 1):
                    yield Batch(files, index, self._tensor(arrays))
                    bar.update(index[-1] + 1 - bar.n)
                    self.read += files
                    files, index, arrays = [], [], []
        if not self.read:
            if len(self.refused) == 1:
                raise inputs.InputError(f"{self.refused[0][0]}: {self.refused[0][1]}")
            raise inputs.InputError(
                f"none of the {len(self.refused)} inputs is readable, e.g. {self.refused[0][0]}: {self.refused[0][1]}"
            )

    def _load(self, f: Path) -> np.ndarray:
        d = self.data
        if self.video:
            return inputs.load_clip(f, d.frames, d.fps, d.resolution, d.channels, d.resize_mode)
        return inputs.load_image(f, d.resolution, d.channels, d.resize_mode, d.background)

    def _tensor(self, arrays: list[np.ndarray]) -> torch.Tensor:
        a = np.stack(arrays)
        return from_uint8(a) if self.video else inputs.from_arrays(a, self.data.channels)

    def report(self) -> int:
        """After the results: a note on what was left out, one `error:` line per refused file;
        the exit status, 1 when any was refused."""
        if self.others:
            print(f"note: left out {self.others} file(s) of other kinds in the folders given", file=sys.stderr)
        for f, reason in self.refused:
            report(f"{f}: {reason}", one_line=True)
        return 1 if self.refused else 0

    def as_json(self) -> dict:
        return {
            "transform": self.transform,
            "refused": [{"file": str(f), "reason": r} for f, r in self.refused],
            "other_files_left_out": self.others,
        }


def safe_names(names: list[str], suffix: str = ".png", seen: set[str] | None = None) -> list[str]:
    """Output file names from input names: the base name only, no control or path characters,
    no leading dot, unique (also against `seen`, the names given out before, which it extends)."""
    out, seen = [], set() if seen is None else seen
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).stem).lstrip(".") or "image"
        candidate, k = stem + suffix, 1
        while candidate in seen:
            candidate, k = f"{stem}-{k}{suffix}", k + 1
        seen.add(candidate)
        out.append(candidate)
    return out


def _png(image: torch.Tensor) -> bytes:
    """One C×H×W image as PNG bytes; one C×T×H×W clip as an animated PNG."""
    return png_bytes(image[None], nrow=1, pad=0)


def _check_new_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"{out}: exists and is not an empty folder; choose a new output folder")


def _write_pngs(folder: Path, names: list[str], images: torch.Tensor) -> None:
    for name, im in zip(names, images):
        (folder / name).write_bytes(_png(im))


# ---- the commands ---------------------------------------------------------------------------


def encode(argv) -> int:
    p = _parser(
        "encode",
        "Encode images to their clean latents z_clean = E(x) (deterministic).\n\n"
        "Writes an .npz with z_clean (N×C×h×w float32), the input file names, the model's\n"
        "identity (sha256 of its weights) and λ(0); `ul decode` reads it back.",
    )
    _images(p)
    p.add_argument("-o", "--out", required=True, help="output .npz file")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise CommandError(f"{out}: the latent file must end in .npz")
    ae = _autoencoder(args)
    got = Inputs(ae, args.images)
    z = torch.cat([ae.encode(b.x).cpu() for b in got.batches(args.batch_size, "encode")])
    with atomic.replacing(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                z_clean=z.numpy().astype(np.float32),
                names=np.array([f.name for f in got.read], dtype=str),
                model_sha256=np.array(ae.identity),
                logsnr0=np.array(ae.logsnr0),
            )
    print(f"wrote {out}: {len(z)} latents of shape {tuple(z.shape[1:])} (inputs: {got.transform})")
    return got.report()


def read_latents(path: Path, ae: Autoencoder) -> tuple[list[str], torch.Tensor]:
    """An `ul encode` file, checked against the model that will decode it."""
    try:
        data = npz.read(path, LATENT_KEYS)
    except (OSError, ValueError) as err:
        raise CommandError(
            f"{path}: not a latent file from `ul encode` ({type(err).__name__}: {err})".splitlines()[0]
        ) from None
    except KeyError as err:
        raise CommandError(f"{path}: not a latent file from `ul encode` (no {err} array)") from None
    if str(data["model_sha256"]) != ae.identity:
        raise CommandError(
            f"{path}: made by another model (weights {str(data['model_sha256'])[:12]}…, this model {ae.identity[:12]}…)"
        )
    z = data["z_clean"]
    if (
        z.dtype != np.float32
        or z.ndim != 1 + len(ae.latent_shape)
        or tuple(z.shape[1:]) != ae.latent_shape
        or len(data["names"]) != len(z)
    ):
        raise CommandError(
            f"{path}: latents of shape {z.shape} ({z.dtype}), this model's are N×{'×'.join(map(str, ae.latent_shape))}"
        )
    return [str(n) for n in data["names"]], torch.from_numpy(z)


def decode(argv) -> int:
    p = _parser(
        "decode",
        "Decode latents from `ul encode`: z0 = α0·z_clean + σ0·ε at λ(0), then the\n"
        "diffusion decoder's sampler. Writes one PNG per latent, named after its image.",
    )
    p.add_argument("latents", help="an .npz written by `ul encode` with this model")
    p.add_argument("-o", "--out", required=True, help="output folder (new or empty)")
    _sampling(p)
    args = p.parse_args(argv)
    out = Path(args.out)
    _check_new_folder(out)
    ae = _autoencoder(args)
    names, z = read_latents(Path(args.latents), ae)
    names, size = safe_names(names), args.batch_size
    with new_dir(out) as tmp:
        for i in tqdm(range(0, len(z), size), desc="decode", unit="batch", disable=None):
            gens = rng.per_example(args.seed, i, len(z[i : i + size]))
            x = ae.decode(ae.noisy(z[i : i + size], gens), args.steps, args.sampler, gens).cpu()
            _write_pngs(tmp, names[i : i + size], x)
    print(f"wrote {len(z)} images to {out}/")
    return 0


GRID_MAX = 64  # reconstruct's grid.png shows the first 64 pairs (a folder may hold millions)


def reconstruct(argv) -> int:
    p = _parser(
        "reconstruct",
        "Reconstruct images: encode, add the λ(0) noise, decode. Writes one PNG per\n"
        f"image and grid.png (the first {GRID_MAX} originals, each left of its reconstruction, enlarged for the eye).",
    )
    _images(p)
    p.add_argument("-o", "--out", required=True, help="output folder (new or empty)")
    _sampling(p)
    args = p.parse_args(argv)
    out = Path(args.out)
    _check_new_folder(out)
    ae = _autoencoder(args)
    got = Inputs(ae, args.images)
    seen, shown, count = set(), [], 0
    with new_dir(out) as tmp:
        for b in got.batches(args.batch_size, "reconstruct"):
            gens = b.generators(args.seed)
            rec = ae.reconstruct(b.x, args.steps, args.sampler, gens).cpu()
            _write_pngs(tmp, safe_names([f.name for f in b.files], seen=seen), rec)
            shown += [(x, r) for x, r in zip(b.x, rec)][: GRID_MAX - len(shown)]
            count += len(rec)
        x, rec = (torch.stack(t) for t in zip(*shown))
        save_pairs_grid(x, rec, tmp / "grid.png", nrow=4, scale=display_scale(ae.image_shape[-1]))
    print(f"wrote {count} reconstructions and grid.png to {out}/ (inputs: {got.transform})")
    return got.report()


def rate(argv) -> int:
    p = _parser(
        "rate",
        "The latent bitrate of each image: the diffusion prior's bound on the bits of z0,\n"
        "averaged over noise draws. Prints file, bits per image, bits per pixel (H·W).",
    )
    _images(p)
    p.add_argument("--draws", type=int, default=8, help="noise draws per image (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    if args.draws < 1:
        raise CommandError(f"--draws must be at least 1, got {args.draws}")
    ae = _autoencoder(args)
    got = Inputs(ae, args.images)
    pixels = math.prod(ae.image_shape[1:])
    rows = []
    for b in got.batches(args.batch_size, "rate"):
        bits = ae.rate(b.x, args.draws, generator=b.generators(args.seed))
        rows += [
            {"file": str(f), "bits_per_image": float(v), "bits_per_pixel": float(v) / pixels}
            for f, v in zip(b.files, bits)
        ]
    if args.json:
        print(json.dumps({"images": rows, **got.as_json()}, indent=1))
        return got.report()
    width = max(len("file"), *(len(r["file"]) for r in rows))
    print(f"{'file':<{width}}  {'bits/image':>10}  {'bits/pixel':>10}")
    for r in rows:
        print(f"{r['file']!s:<{width}}  {r['bits_per_image']:>10.2f}  {r['bits_per_pixel']:>10.5f}")
    mean = sum(r["bits_per_image"] for r in rows) / len(rows)
    print(f"{'mean':<{width}}  {mean:>10.2f}  {mean / pixels:>10.5f}")
    print(f"inputs: {got.transform}")
    return got.report()


def sample(argv) -> int:
    p = _parser(
        "sample",
        "Generate images (Algorithm 2): the base model samples z0 at λ(0), the decoder\n"
        "renders it. -o FOLDER writes one PNG each; -o NAME.png writes one grid.",
    )
    p.add_argument("-n", type=int, default=16, help="number of images (default: %(default)s)")
    p.add_argument("-o", "--out", required=True, help="output folder (new or empty), or a .png grid")
    p.add_argument("--stage2", default="models/stage2", help="stage-2 export folder (default: %(default)s)")
    p.add_argument("--base-steps", type=int, default=50, help="base-model sampler steps (default: %(default)s)")
    _sampling(p)
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.n < 1:
        raise CommandError(f"-n must be at least 1, got {args.n}")
    if out.suffix != ".png":
        _check_new_folder(out)
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {args.batch_size}")
    ld = LatentDiffusion.load(args.model, args.stage2, resolve_device(args.device), args.precision)

    def draw(i: int) -> torch.Tensor:  # samples i, i+1, ...: each from its own generator
        gens = rng.per_example(args.seed, i, min(args.batch_size, args.n - i))
        return ld.sample(len(gens), args.base_steps, args.steps, args.sampler, gens).cpu()

    starts = range(0, args.n, args.batch_size)
    if out.suffix == ".png":
        x = torch.cat([draw(i) for i in tqdm(starts, desc="sample", unit="batch", disable=None)])
        with atomic.replacing(out) as tmp:
            save_grid(x, tmp, nrow=int(np.ceil(np.sqrt(len(x)))), scale=display_scale(x.shape[-1]))
        print(f"wrote a grid of {len(x)} samples to {out}")
    else:
        with new_dir(out) as tmp:
            for i in tqdm(starts, desc="sample", unit="batch", disable=None):
                x = draw(i)
                _write_pngs(tmp, [f"sample-{j:05d}.png" for j in range(i, i + len(x))], x)
        print(f"wrote {args.n} samples to {out}/")
    return 0


def info(argv) -> int:
    p = argparse.ArgumentParser(
        prog="ul info",
        description="What an export is and what a user of its latents needs: the class, the image and latent\n"
        "shapes, λ(0), α0, σ0, the per-channel mean and std of z_clean over the training split, the\n"
        "scale to apply before training a diffusion model of your own on the latents, the log-SNR the\n"
        "scaled z0 then sits at, and the measured rate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", default="models/stage1", help="an export folder (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print config.json's class, identity and latents as JSON")
    args = p.parse_args(argv)
    folder = Path(args.model)
    cls, cfg = export.read_config(folder)
    meta = export.read_meta(folder)
    latents = meta.get("latents") or {}
    summary = {"model": str(folder), "class": cls.__name__, "sha256": export.identity(folder), "latents": latents}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    d = cfg.data
    shape = (d.channels, d.frames, d.resolution, d.resolution) if d.frames else (d.channels, d.resolution, d.resolution)
    rows = [("images", "×".join(map(str, shape)) + ", values in [-1, 1]")]
    rows += model_card.latents_rows(latents) if latents else [("latents", "not recorded (an export older than ul 0.1)")]
    print(f"{folder}: {cls.__name__}, weights sha256 {summary['sha256']}")
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"  {k:<{width}}  {v}" for k, v in rows))
    return 0


def export_bundle(argv) -> int:
    from ul.artifacts.bundle import write_bundle

    p = argparse.ArgumentParser(
        prog="ul export",
        description="Write a shareable copy of the trained models: "
        "stage1/ and stage2/ (model.safetensors, config.json, README.md model card with the "
        "evaluation and provenance), metrics.json, params.yaml, dvc.lock.",
    )
    p.add_argument("out", help="output folder (new or empty)")
    p.add_argument("--root", default=".", help="pipeline work tree (default: %(default)s)")
    args = p.parse_args(argv)
    out = Path(args.out)
    _check_new_folder(out)
    with new_dir(out) as tmp:
        names = write_bundle(Path(args.root), tmp)
    print(f"wrote {len(names)} files to {out}/: " + ", ".join(names))
    return 0


COMMANDS = {
    "encode": encode,
    "decode": decode,
    "reconstruct": reconstruct,
    "rate": rate,
    "sample": sample,
    "info": info,
    "export": export_bundle,
}


def run(name: str, argv) -> int:
    """Run a command; expected failures are one `error:` line and status 1."""
    try:
        return COMMANDS[name](argv)
    except (CommandError, inputs.InputError, ExportError, ValueError, OSError) as err:
        return report(err, one_line=True)
