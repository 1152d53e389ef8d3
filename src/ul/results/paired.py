"""The headline study's analysis, fixed before its runs (docs/results/headline.md) and kept.

For each pair of arms (UL against a KL-VAE) and stage-2 budget, the same seeds run both arms, and
each metric (gFID, gKID, the stage-2 s2FID) is compared by its per-seed differences
d_i = UL_i − KL_i (lower is better for all three): their mean and 95% t-interval. A budget counts
as "UL ahead" only if gFID's interval lies below 0 and gKID's agrees (below 0 too), "UL behind"
if gFID's lies above 0 and gKID's agrees, and otherwise "not resolved at n = <seeds>". No stopping
early when an interval happens to clear 0: every planned seed runs. A pair whose verdict is not
resolved at its planned seeds is extended once, to at most `MAX_SEEDS`, and its verdict at the
extended n is final.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

METRICS = ("gfid", "gkid", "s2fid")  # lower is better for each
LEVEL = 0.95
MAX_SEEDS = 8


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float
    low: float
    high: float

    def below_zero(self) -> bool:
        return self.high < 0

    def above_zero(self) -> bool:
        return self.low > 0


def interval(diffs: list[float], level: float = LEVEL) -> Interval:
    """The mean of paired differences and its two-sided t-interval (n ≥ 2)."""
    from scipy import stats  # heavy: only when there is something to analyse

    n = len(diffs)
    if n < 2:
        raise ValueError(f"a paired interval needs at least 2 seeds, got {n}")
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half)


def differences(ul: dict[int, dict], kl: dict[int, dict], metric: str) -> list[float]:
    """UL − KL for `metric` over the seeds both arms finished, in seed order."""
    seeds = sorted(set(ul) & set(kl))
    return [ul[s][metric] - kl[s][metric] for s in seeds if metric in ul[s] and metric in kl[s]]


def verdict(gfid: Interval, gkid: Interval) -> str:
    if gfid.below_zero() and gkid.below_zero():
        return "UL ahead"
    if gfid.above_zero() and gkid.above_zero():
        return "UL behind"
    return f"not resolved at n = {gfid.n}"


def claim(verdict: str) -> str:
    """The paper's headline (UL's latents are easier to model at equal stage-2 compute) in the words
    the plan reports it in, from a final verdict."""
    return {"UL ahead": "reproduced", "UL behind": "refuted"}.get(verdict, "not resolved")


def seeds_to_run(planned: int, gfid: list[float], gkid: list[float]) -> int:
    """How many seeds a pair runs in all, decided from its planned seeds' differences only: the
    planned number, or `MAX_SEEDS` (once) when the verdict at the planned seeds is not resolved."""
    if min(len(gfid), len(gkid)) < planned:
        return planned  # the planned seeds have not all run: nothing to decide yet
    first = verdict(interval(gfid[:planned]), interval(gkid[:planned]))
    return planned if first in ("UL ahead", "UL behind") else MAX_SEEDS
