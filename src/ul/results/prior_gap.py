"""How loose is a stage-1 run's rate bound? The jointly trained prior's L_z bounds the bits of z0
from above; a fresh prior of the same architecture, trained alone on the run's frozen clean latents
(the encoder fixed, so the target no longer moves), gives another upper bound. What the fresh prior
saves is a lower bound on how loose the joint one was (docs/results/prior-gap.md).

Both priors are measured on the same held-out latents (test images) with the same noise draws, in
bits per image (`ul.core.schedules.bits`).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ul.common.images import from_uint8
from ul.core.losses import NoiseDraw, prior_loss
from ul.core.model import UnifiedLatents
from ul.core.schedules import bits
from ul.train.loop import learning_rate


@torch.no_grad()
def clean_latents(model: UnifiedLatents, images, batch_size: int = 256) -> torch.Tensor:
    """z_clean = E(x) of every row of `images` (uint8 shards), float32."""
    total = -(-len(images) // batch_size)
    return torch.cat(
        [model.encode(from_uint8(b)) for b in tqdm(images.iter_batches(batch_size), total=total, desc="encode")]
    )


@torch.no_grad()
def bound_bits(prior, model: UnifiedLatents, z: torch.Tensor, seed: int, draws: int, batch_size: int = 500) -> float:
    """Mean L_z of `prior` over `z`, in bits per image, averaged over `draws` noise draws from `seed`
    (the same draws for any prior given the same seed)."""
    gen, nats = torch.Generator().manual_seed(seed), 0.0
    for _ in range(draws):
        for start in range(0, len(z), batch_size):
            zb = z[start : start + batch_size]
            draw = NoiseDraw.draw(len(zb), model.z_shape, gen)
            nats += float(prior_loss(zb, prior, model.prior_schedule, draw)["prior"].double().sum())
    return bits(nats / (draws * len(z)))["bits_per_image"]


def fit_prior(
    model: UnifiedLatents,
    z_train: torch.Tensor,
    steps: int,
    seed: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    on_step=None,
) -> torch.nn.Module:
    """A prior of the run's architecture, initialised from `seed`, trained on the frozen `z_train`
    with the unweighted ELBO (prior_loss) alone; `on_step(step, prior)` is called after each step."""
    torch.manual_seed(seed)
    prior = UnifiedLatents(model.cfg).prior.train()
    opt = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=weight_decay)
    gen, rows = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    for step in tqdm(range(steps), desc="fresh prior", unit="step", mininterval=1.0):
        for group in opt.param_groups:
            # cosine decay to 0: the fresh prior ends converged, not mid-step
            group["lr"] = learning_rate(step, steps, lr, warmup=min(100, steps // 10), decay="cosine")
        zb = z_train[torch.from_numpy(rows.integers(0, len(z_train), batch_size))]
        loss = prior_loss(zb, prior, model.prior_schedule, NoiseDraw.draw(batch_size, model.z_shape, gen))["prior"]
        opt.zero_grad(set_to_none=True)
        loss.mean().backward()
        opt.step()
        if on_step is not None:
            on_step(step + 1, prior)
    return prior.eval()


def measure(model: UnifiedLatents, train, test, steps: int, seed: int = 0, draws: int = 4, checks: int = 5) -> dict:
    """The joint prior's bound and a fresh prior's on the test latents (bits per image), the fresh
    one also at `checks` points of its training (to show whether it had converged)."""
    model = model.eval().requires_grad_(False)
    z_train, z_test = clean_latents(model, train), clean_latents(model, test)
    joint = bound_bits(model.prior, model, z_test, seed + 1, draws)
    every = max(steps // checks, 1)
    curve = []

    def check(step, prior):
        if step % every == 0 or step == steps:
            curve.append((step, bound_bits(prior.eval(), model, z_test, seed + 1, draws)))
            prior.train()

    fit_prior(model, z_train, steps, seed, on_step=check)
    fresh = curve[-1][1]
    return {
        "joint_bits_per_image": joint,
        "fresh_bits_per_image": fresh,
        "saved_bits_per_image": joint - fresh,
        "saved_fraction": (joint - fresh) / joint,
        "fresh_curve": curve,
        "steps": steps,
        "seed": seed,
        "draws": draws,
        "train_latents": len(z_train),
        "test_latents": len(z_test),
    }


LOOSE = 0.10  # a saved fraction above this calls a bound loose (docs/results/prior-gap.md)


def verdict(saved: dict[tuple[float, int], float], seeds=(1, 2)) -> str:
    """The registered rule on the saved fractions {(λ(0), seed): s}: is the bound loose at λ(0) = 10
    (and looser than at 5)?"""
    if any((v, s) not in saved for v in (5.0, 10.0) for s in seeds):
        return "not run yet"
    high = [saved[10.0, s] for s in seeds]
    low = [saved[5.0, s] for s in seeds]
    if all(h > LOOSE for h in high) and all(h > lo for h, lo in zip(high, low)):
        return "reproduced"
    if all(h < LOOSE for h in high):
        return "refuted"
    return f"not resolved at {len(seeds)} seeds"
