"""FID's Fréchet distance: the D×D square-root route against the N×N singular-value route that
`ul.eval.frechet.fid_from_features` takes when there are fewer features than dimensions.

    python bench/frechet.py [--n 32 500] [--repeats 3]

On 2048-d features of random, correlated sets of N each, prints both wall times (best of the
repeats), their ratio and the relative difference of the two FIDs (round-off only).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ul.eval.frechet import fid_from_features, frechet_distance, gaussian_stats
from ul.eval.inception import INCEPTION_DIM


def best(fn, repeats: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[32, 500])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    for n in a.n:
        x = np.abs(rng.normal(size=(n, INCEPTION_DIM))) ** 2  # non-negative and skewed, like pool features
        y = np.abs(rng.normal(size=(n, INCEPTION_DIM)) + 0.1) ** 2
        t_full, full = best(lambda x=x, y=y: frechet_distance(*gaussian_stats(x), *gaussian_stats(y)), a.repeats)
        t_low, low = best(lambda x=x, y=y: fid_from_features(x, y), a.repeats)
        print(
            f"N = {n}: D×D eigh {t_full:.3f} s, N×N singular values {t_low:.4f} s → {t_full / t_low:.0f}×; "
            f"FID {full:.6f} vs {low:.6f} (relative difference {abs(full - low) / full:.1e})"
        )


if __name__ == "__main__":
    main()
