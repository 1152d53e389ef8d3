"""How noisy FID is at N, measured rather than assumed, to size `eval.fid_num_samples`.

FID at N is biased upward (∝ 1/N) and scatters from one draw of N images to the next (∝ 1/√N). This
draws disjoint random sets from pools of Inception features, repeatedly, and reports the mean and
spread at each N of: the floor (real test images against other real test images), and, given a
trained pair, gFID (generated samples against real test images). Draws share one pool, so at N
near half the pool they overlap and the spread is underestimated: keep pool ≥ 4·N (reported).

Two estimates of one model differ by √2·σ_N; a 10% gFID difference is outside the noise (two
standard errors) when 0.1·gFID > 2·√2·σ_N.
"""

from __future__ import annotations

import numpy as np

from ul.eval.frechet import fid_from_features


def draws(a: np.ndarray, b: np.ndarray | None, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """`k` FIDs between n rows of `a` and n other rows of `b` (of `a` itself when b is None)."""
    out = []
    for _ in range(k):
        if b is None:
            p = rng.permutation(len(a))
            x, y = a[p[:n]], a[p[n : 2 * n]]
        else:
            x, y = a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]
        out.append(fid_from_features(x, y))
    return np.array(out)


def measure(real: np.ndarray, fake: np.ndarray | None, ns: list[int], k: int, seed: int = 0) -> list[dict]:
    """Rows {what, n, mean, std, rel_std, pool, draws, detect_10pct} for the floor and, with `fake`, gFID."""
    rng = np.random.default_rng(seed)
    rows = []
    for what, a, b, pool in (("floor", real, None, len(real) // 2), ("gfid", real, fake, None)):
        if what == "gfid" and fake is None:
            continue
        pool = pool or min(len(real), len(fake))
        for n in ns:
            if 2 * n > len(real) or (b is not None and n > len(b)):
                continue
            v = draws(a, b, n, k, rng)
            mean, std = float(v.mean()), float(v.std(ddof=1))
            rows.append(
                {
                    "what": what,
                    "n": n,
                    "mean": mean,
                    "std": std,
                    "rel_std": std / mean,
                    "pool": pool,
                    "draws": k,
                    "detect_10pct": bool(0.1 * mean > 2 * np.sqrt(2) * std),
                }
            )
    return rows


def markdown(rows: list[dict], note: str) -> str:
    lines = [
        "# How noisy is FID at N?\n",
        "Written by `ul results fid-noise` (src/ul/results/fid_noise.py). " + note + "\n",
        "| set | N | mean FID | std over draws | std / mean | pool | draws | 10% difference outside 2σ? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['what']} | {r['n']} | {r['mean']:.2f} | {r['std']:.2f} | {100 * r['rel_std']:.1f}% | "
            f"{r['pool']} | {r['draws']} | {'yes' if r['detect_10pct'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


# fid-noise.md's second section, the training seed's spread, is written by `ul results report` (from
# the headline study) and kept when `ul results fid-noise` rewrites the sampling table above it.
SEED_HEADING = "## Beside it: the training seed's spread"


def split_seed_section(text: str) -> tuple[str, str]:
    """fid-noise.md as (the sampling table, the seed-spread section or '')."""
    head, sep, tail = text.partition("\n" + SEED_HEADING)
    return head.rstrip("\n") + "\n", (SEED_HEADING + tail if sep else "")


def with_seed_section(text: str, section: str) -> str:
    """fid-noise.md's text with its seed-spread section replaced by `section`."""
    head, _ = split_seed_section(text)
    return head + ("\n" + section if section else "")
