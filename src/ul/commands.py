"""`ul encode | decode | reconstruct | rate | sample | export`: a trained model on a user's own files.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ul import inputs
from ul.api import Autoencoder, Generator
from ul.artifacts.export import ExportError
from ul.common import atomic
from ul.common.atomic import staged_dir
from ul.common.device import resolve_device
from ul.common.errors import report
from ul.common.images import display_scale, from_uint8, png_bytes, save_grid, save_pairs_grid
from ul.core import samplers

LATENT_KEYS = ("z_clean", "names", "model_sha256", "logsnr0")


class CommandError(ValueError):
    """A command's own input or output is unusable; the message names it."""


def _parser(name: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"ul {name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="models/stage1", help="stage-1 export folder (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: %(default)s)")
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
    p.add_argument("--seed", type=int, default=0, help="seed of every noise draw (default: %(default)s)")


def _autoencoder(args) -> Autoencoder:
    return Autoencoder.load(args.model, resolve_device(args.device))


@dataclass
class Inputs:
    """What a command read: the readable files and their [-1, 1] images, the refused ones with
    why, and how many files of other kinds the folders held (left out, never silently)."""

    files: list[Path]
    x: torch.Tensor
    refused: list[tuple[Path, str]]
    others: int
    transform: str

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


def _read_images(ae: Autoencoder, paths: list[str]) -> Inputs:
    """Every input decoded before any model work: the readable ones → [-1, 1] images, the others
    refused by name and reason; none readable is an error."""
    d = ae.config.data
    video = bool(d.frames)  # a video model reads video files, each as its first data.frames frames
    files, others = inputs.list_inputs(paths, inputs.VIDEO_SUFFIXES if video else inputs.SUFFIXES)
    read, arrays, refused = [], [], []
    with tqdm(files, desc="read", unit="clip" if video else "img", leave=False, disable=None) as bar:
        for f in bar:
            try:
                if video:
                    arrays.append(inputs.load_clip(f, d.frames, d.fps, d.resolution, d.channels, d.resize_mode))
                else:
                    arrays.append(inputs.load_image(f, d.resolution, d.channels, d.resize_mode, d.background))
                read.append(f)
            except inputs.InputError as err:
                refused.append((f, str(err).removeprefix(f"{f}: ")))
    if not read:
        if len(refused) == 1:
            raise inputs.InputError(f"{refused[0][0]}: {refused[0][1]}")
        raise inputs.InputError(f"none of the {len(refused)} inputs is readable, e.g. {refused[0][0]}: {refused[0][1]}")
    x = from_uint8(np.stack(arrays)) if video else inputs.from_arrays(np.stack(arrays), d.channels)
    return Inputs(read, x, refused, others, inputs.transform_text(d))


def _batched(fn, x: torch.Tensor, size: int, desc: str) -> torch.Tensor:
    if size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {size}")
    with tqdm(range(0, len(x), size), desc=desc, unit="batch", disable=None) as bar:  # no bar text off a terminal
        return torch.cat([fn(x[i : i + size]).cpu() for i in bar])


def safe_names(names: list[str], suffix: str = ".png") -> list[str]:
    """Output file names from input names: the base name only, no control or path characters,
    no leading dot, unique."""
    out, seen = [], set()
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


def _write_folder(out: Path, files: dict[str, bytes], grid=None) -> None:
    """All files, or none: filled beside `out`, then renamed into place."""
    _check_new_folder(out)
    with staged_dir(out) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if grid is not None:
            grid(tmp)


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
    got = _read_images(ae, args.images)
    files, x = got.files, got.x
    z = _batched(ae.encode, x, args.batch_size, "encode")
    with atomic.replacing(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                z_clean=z.numpy().astype(np.float32),
                names=np.array([f.name for f in files], dtype=str),
                model_sha256=np.array(ae.identity),
                logsnr0=np.array(ae.logsnr0),
            )
    print(f"wrote {out}: {len(files)} latents of shape {tuple(z.shape[1:])} (inputs: {got.transform})")
    return got.report()


def read_latents(path: Path, ae: Autoencoder) -> tuple[list[str], torch.Tensor]:
    """An `ul encode` file, checked against the model that will decode it."""
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in LATENT_KEYS}
    except (OSError, ValueError, EOFError) as err:
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
    gen = torch.Generator().manual_seed(args.seed)
    x = _batched(lambda zb: ae.decode(ae.noisy(zb, gen), args.steps, args.sampler, gen), z, args.batch_size, "decode")
    _write_folder(out, {n: _png(im) for n, im in zip(safe_names(names), x)})
    print(f"wrote {len(x)} images to {out}/")
    return 0


def reconstruct(argv) -> int:
    p = _parser(
        "reconstruct",
        "Reconstruct images: encode, add the λ(0) noise, decode. Writes one PNG per\n"
        "image and grid.png (each original left of its reconstruction, enlarged for the eye).",
    )
    _images(p)
    p.add_argument("-o", "--out", required=True, help="output folder (new or empty)")
    _sampling(p)
    args = p.parse_args(argv)
    out = Path(args.out)
    _check_new_folder(out)
    ae = _autoencoder(args)
    got = _read_images(ae, args.images)
    files, x = got.files, got.x
    gen = torch.Generator().manual_seed(args.seed)
    rec = _batched(lambda xb: ae.reconstruct(xb, args.steps, args.sampler, gen), x, args.batch_size, "reconstruct")
    scale = display_scale(ae.image_shape[-1])
    _write_folder(
        out,
        {n: _png(im) for n, im in zip(safe_names([f.name for f in files]), rec)},
        grid=lambda tmp: save_pairs_grid(x, rec, tmp / "grid.png", nrow=4, scale=scale),
    )
    print(f"wrote {len(rec)} reconstructions and grid.png to {out}/ (inputs: {got.transform})")
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
    got = _read_images(ae, args.images)
    files, x = got.files, got.x
    gen = torch.Generator().manual_seed(args.seed)
    bits = _batched(lambda xb: ae.rate(xb, args.draws, generator=gen), x, args.batch_size, "rate")
    pixels = math.prod(ae.image_shape[1:])
    rows = [
        {"file": str(f), "bits_per_image": float(b), "bits_per_pixel": float(b) / pixels} for f, b in zip(files, bits)
    ]
    if args.json:
        print(json.dumps({"images": rows, **got.as_json()}, indent=1))
        return got.report()
    width = max(len("file"), *(len(r["file"]) for r in rows))
    print(f"{'file':<{width}}  {'bits/image':>10}  {'bits/pixel':>10}")
    for r in rows:
        print(f"{r['file']!s:<{width}}  {r['bits_per_image']:>10.2f}  {r['bits_per_pixel']:>10.5f}")
    mean = float(bits.mean())
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
    gen = Generator.load(args.model, args.stage2, resolve_device(args.device))
    rng = torch.Generator().manual_seed(args.seed)
    counts = [min(args.batch_size, args.n - i) for i in range(0, args.n, max(1, args.batch_size))]
    x = torch.cat(
        [
            gen.sample(k, args.base_steps, args.steps, args.sampler, rng).cpu()
            for k in tqdm(counts, desc="sample", unit="batch", disable=None)
        ]
    )
    if out.suffix == ".png":
        with atomic.replacing(out) as tmp:
            save_grid(x, tmp, nrow=int(np.ceil(np.sqrt(len(x)))), scale=display_scale(x.shape[-1]))
        print(f"wrote a grid of {len(x)} samples to {out}")
    else:
        _write_folder(out, {f"sample-{i:05d}.png": _png(im) for i, im in enumerate(x)})
        print(f"wrote {len(x)} samples to {out}/")
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
    with staged_dir(out) as tmp:
        names = write_bundle(Path(args.root), tmp)
    print(f"wrote {len(names)} files to {out}/: " + ", ".join(names))
    return 0


COMMANDS = {
    "encode": encode,
    "decode": decode,
    "reconstruct": reconstruct,
    "rate": rate,
    "sample": sample,
    "export": export_bundle,
}


def run(name: str, argv) -> int:
    """Run a command; expected failures are one `error:` line and status 1."""
    try:
        return COMMANDS[name](argv)
    except (CommandError, inputs.InputError, ExportError, ValueError, OSError) as err:
        return report(err, one_line=True)
