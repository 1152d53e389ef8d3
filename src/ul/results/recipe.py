"""The recipe study's analysis, fixed before its runs (docs/results/recipe.md) and kept: does a
recipe reach the committed reference run's quality on at most half of today's training FLOPs, and
does evaluation keep its numbers at fewer sampler steps?

A recipe is judged on the mean over its seeds (each seed's own gFID over its own FID floor, at
N = 500): it **reaches the reference** when PSNR ≥ 15.6 dB, gFID ≤ 1.49 × the floor and the rate
is 16.9 bits per image ± 15%, on at most 180 TFLOPs of training (stages 1 + 2, as counted), with
every planned seed run. The new default is the reaching recipe with the fewest FLOPs (within 1%,
the higher PSNR). An evaluation setting keeps the numbers when, on the same models, its gFID is
within 3% of 50 + 50 steps' (about twice FID's sampling spread at N = 500, fid-noise.md) and its
PSNR no more than 0.1 dB lower; the cheapest such setting, by counted sampling FLOPs, is chosen.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# the committed reference run (docs/reference-runs.md: 2026-12-03, N = 500, 50 + 50 steps)
PSNR_DB = 15.6
GFID_OVER_FLOOR = 1.49
BITS_PER_IMAGE, RATE_TOLERANCE = 16.9, 0.15
MAX_TFLOPS = 180.0
EVAL_GFID_TOLERANCE, EVAL_PSNR_DROP_DB = 0.03, 0.1


@dataclass(frozen=True)
class Spread:
    mean: float
    sd: float | None  # None for one seed


def spread(values: list[float]) -> Spread:
    return Spread(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None)


@dataclass(frozen=True)
class Summary:
    seeds: int
    tflops: float  # training, stages 1 + 2, mean over seeds
    bits: Spread  # latent bits per image
    psnr: Spread  # dB
    ratio: Spread  # gFID / FID floor


def summarise(runs: list[tuple[dict, float]]) -> Summary:
    """`runs`: each seed's (eval metrics, training FLOPs of stages 1 + 2)."""
    return Summary(
        len(runs),
        statistics.mean(f for _, f in runs) / 1e12,
        spread([m["latent_bits_per_image"] for m, _ in runs]),
        spread([m["psnr_db"] for m, _ in runs]),
        spread([m["gfid"] / m["fid_floor"] for m, _ in runs]),
    )


def shortfalls(s: Summary, planned: int) -> list[str]:
    """What keeps the recipe from reaching the reference; empty when it reaches it."""
    out = []
    if s.seeds < planned:
        out.append(f"{planned - s.seeds} of {planned} seeds not run")
    if s.psnr.mean < PSNR_DB:
        out.append(f"PSNR {s.psnr.mean:.2f} < {PSNR_DB} dB")
    if s.ratio.mean > GFID_OVER_FLOOR:
        out.append(f"gFID {s.ratio.mean:.2f}× the floor > {GFID_OVER_FLOOR}×")
    if abs(s.bits.mean / BITS_PER_IMAGE - 1) > RATE_TOLERANCE:
        out.append(f"rate {s.bits.mean:.1f} bits/image outside {BITS_PER_IMAGE} ± {RATE_TOLERANCE:.0%}")
    if s.tflops > MAX_TFLOPS:
        out.append(f"{s.tflops:.0f} > {MAX_TFLOPS:.0f} TFLOPs")
    return out


def choose(summaries: dict[str, Summary], planned: int) -> str | None:
    """The new default: the reaching recipe with the fewest FLOPs (within 1%, the higher PSNR)."""
    reaching = {r: s for r, s in summaries.items() if not shortfalls(s, planned)}
    if not reaching:
        return None
    least = min(s.tflops for s in reaching.values())
    near = {r: s for r, s in reaching.items() if s.tflops <= least * 1.01}
    return max(near, key=lambda r: near[r].psnr.mean)


def verdict(summaries: dict[str, Summary], planned: int, recipes: tuple[str, ...]) -> str:
    """The rule's answer: the new default, "none yet" while a recipe within the FLOPs bar still has
    seeds to run, or that none reaches the reference (today's recipe stays)."""
    chosen = choose(summaries, planned)
    if chosen:
        return chosen

    def still_open(r: str) -> bool:  # not run yet, or short of seeds while within the FLOPs bar
        s = summaries.get(r)
        return s is None or (s.seeds < planned and s.tflops <= MAX_TFLOPS)

    if any(map(still_open, recipes)):
        return "none yet"
    return "none: no recipe reaches the reference, so today's recipe stays"


def keeps_the_numbers(m: dict, ref: dict) -> bool:
    """Whether evaluation at `m`'s setting reads what it reads at 50 + 50 steps with the fp32 Inception (`ref`)."""
    return (
        abs(m["gfid"] / ref["gfid"] - 1) <= EVAL_GFID_TOLERANCE and m["psnr_db"] >= ref["psnr_db"] - EVAL_PSNR_DROP_DB
    )
