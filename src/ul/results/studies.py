"""The studies of docs/results, each point a DVC experiment at the `sweep` preset (the video
study's at the `video` preset).

Points are listed in run order: `ul results run` runs them one after another in the workspace, so
a point that changes only stage-2 or evaluation params after one that trained the same stage 1
reuses it (DVC re-runs only the stages whose params or deps changed). A point may appear in several
studies (the sweep preset itself: loss factor 2.1, λ(0) = 5, 500 stage-2 steps, is in all of the first three).
"""

from __future__ import annotations

from dataclasses import dataclass

from ul.results.paired import MAX_SEEDS

PRESET = "preset=sweep"


@dataclass(frozen=True)
class Point:
    name: str  # the DVC experiment name
    overrides: tuple[str, ...] = ()  # on top of PRESET
    stop_at: str | None = None  # run the pipeline only up to this stage
    preset: str | None = None  # instead of PRESET
    then: tuple[str, ...] = ()  # `ul results` arguments run in the workspace once the experiment is done
    bf16: bool = False  # trains in bf16: run only where it is native (`ul results run` refuses elsewhere)


def _lf(c: float) -> Point:
    return Point(f"rd-lf{c}", (f"unified.loss_factor={c}",))


def _steps(latent: str, steps: int) -> Point:
    short = {"unified": "ul"}.get(latent, latent)  # the experiment names the results already carry
    return Point(f"{short}-s2-{steps}", (f"latent={latent}", f"stage2.steps={steps}"))


def _target(bpp: float) -> Point:
    return Point(f"target-{bpp}", (f"unified.target_bits_per_pixel={bpp}",), stop_at="train_stage1")


BUDGETS = (125, 250, 500)  # stage-2 steps of 128 latents
LOSS_FACTORS = (1.3, 1.5, 1.7, 1.9, 2.1, 2.5, 3.0)
VIDEO_LOSS_FACTORS = (2.1, 1.5)  # Moving MNIST at the video preset: FVD and bits per pixel
LOGSNR0 = (3.0, 5.0, 10.0)
TARGETS = (0.012, 0.018, 0.027)  # bits per pixel, across the rate–distortion study's 0.0074–0.034

# The headline study (docs/results/headline.md; its analysis is ul.results.paired, fixed before the
# runs): paired arms on the same seeds, two stage-2 budgets, evaluated at N = 500.
HEADLINE_BUDGETS = (125, 500)
HEADLINE_EVAL = ("eval.num_images=500", "eval.fid_num_samples=500")
# Training in float32 on every machine: the points run over several sessions on machines with and
# without native bf16, and `precision: auto` would train some seeds in bf16 and others not.
HEADLINE_FP32 = ("stage1.precision=fp32", "stage2.precision=fp32")
# The rate-matched KL weight: set from the klvae-calibration study (its report names the weight
# whose stage-1 rate is within 10% of UL's at loss factor 3.0), and checked by its own run. Tries
# whose runs missed: 1.39, log–log between KL weights 1 (52 bits per image) and 10 (3.3) for UL's
# 35, reached 39.1 (+11.8%); 1.52 is the interpolation between 1.39 and 10 (2026-12-07).
MATCHED_KL_TRIES: tuple[float, ...] = (1.39,)
MATCHED_KL_WEIGHT: float | None = 1.52
# 1e-4 … 1e-1 as registered; 1 and 10 added once 1e-1 (245 bits per image) had not reached UL's 35
CALIBRATION_KL_WEIGHTS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: tuple[str, ...]


def _ul(c: float) -> Arm:
    return Arm(f"ul{c}", ("latent=unified", f"unified.loss_factor={c}", *HEADLINE_FP32))


def _kl(w: float) -> Arm:
    return Arm(f"kl{w:g}", ("latent=klvae", f"klvae.kl_weight={w:g}", *HEADLINE_FP32))


# pair → (UL arm, KL-VAE arm, planned seeds); a pair not resolved at its planned seeds runs seeds
# up to paired.MAX_SEEDS once (paired.seeds_to_run)
PAIRS: dict[str, tuple[Arm, Arm | None, int]] = {
    "ul2.1-vs-kl1e-06": (_ul(2.1), _kl(1e-6), 5),
    "ul3.0-vs-matched": (_ul(3.0), _kl(MATCHED_KL_WEIGHT) if MATCHED_KL_WEIGHT else None, 3),
}
EXTENSION_SEEDS = MAX_SEEDS  # the extension's seeds are registered; run only when due


def headline_point(arm: Arm, seed: int, steps: int) -> Point:
    sets = (*arm.overrides, f"seed={seed}", f"stage2.steps={steps}", *HEADLINE_EVAL)
    return Point(f"hl-{arm.name}-seed{seed}-s2-{steps}", sets)


def _headline(extension: bool = False) -> list[Point]:
    """Seed by seed, both arms of each pair, the budgets of one stage 1 together (DVC reuses it):
    the planned seeds, or those of the extension (run only for a pair the report says is due)."""
    out = []
    for seed in range(1, EXTENSION_SEEDS + 1):
        for ul, kl, planned in PAIRS.values():
            if (seed > planned) != extension:
                continue
            for arm in (ul, kl):
                if arm is not None:
                    out += [headline_point(arm, seed, steps) for steps in HEADLINE_BUDGETS]
    return out


# the grid, then the matched weight's own run: the check that its rate is within 10% of UL's
CALIBRATION = (
    Point("klcal-ul3.0", _ul(3.0).overrides, stop_at="train_stage1"),
    *(
        Point(f"klcal-kl{w:g}", _kl(w).overrides, stop_at="train_stage1")
        for w in (*CALIBRATION_KL_WEIGHTS, *MATCHED_KL_TRIES, *([MATCHED_KL_WEIGHT] if MATCHED_KL_WEIGHT else []))
    ),
)

# Is the rate bound loose at λ(0) = 10? (docs/results/prior-gap.md, fixed before the runs): stage 1
# at λ(0) = 5 and 10, seeds 1 and 2, then a fresh prior on each run's frozen latents.
PRIOR_GAP_RUNS = {f"pg-logsnr{v:g}-seed{s}": (v, s) for s in (1, 2) for v in (5.0, 10.0)}
PRIOR_GAP = tuple(
    Point(
        name,
        (f"noise.logsnr={v}", f"seed={s}", *HEADLINE_FP32),
        stop_at="train_stage1",
        then=("prior-gap", "--out", f"docs/results/prior-gap/{name}.json"),
    )
    for name, (v, s) in PRIOR_GAP_RUNS.items()
)

# Half the compute (docs/results/recipe.md, fixed before the runs; issue 27): today's default recipe
# (the `cpu` preset: 2,000 + 2,000 steps, 364 TFLOPs of training) against candidates of at most
# 180 TFLOPs, each at seeds 1 and 2, evaluated as the default is (N = 500, 50 + 50 sampler steps).
# In bf16, where it is native (the faster precision there: bench/train.py), and the reference
# recipe read the same quality in fp32 and in bf16 (docs/reference-runs.md).
RECIPE_PRESET = "preset=cpu"
RECIPE_SEEDS = (1, 2)
RECIPE_BF16 = ("stage1.precision=bf16", "stage2.precision=bf16")
_COSINE = ("stage1.lr_decay=cosine", "stage2.lr_decay=cosine")
_HALF = ("stage1.steps=1000", "stage2.steps=950")  # 109.9 + 68.7 = 178.6 TFLOPs
RECIPES: dict[str, tuple[str, ...]] = {
    "default": (),  # today's recipe, 219.7 + 144.6 TFLOPs
    "half": _HALF,  # each stage cut to half, nothing else changed
    "half-cosine": (*_HALF, *_COSINE),  # the learning rate decayed to 0 by a cosine
    "half-cosine-rate": (*_HALF, *_COSINE, "unified.target_bits_per_pixel=0.0165"),  # steered to 16.9 bits/image
    "half-cosine-s1": ("stage1.steps=1200", "stage2.steps=650", *_COSINE),  # 131.8 + 47.0: more to stage 1
    # twice the updates at half the batch, the same FLOPs as half-cosine
    "half-cosine-batch": ("stage1.steps=2000", "stage1.batch_size=32", "stage2.steps=1900", "stage2.batch_size=64")
    + _COSINE,
}


def recipe_point(recipe: str, seed: int) -> Point:
    sets = (*RECIPES[recipe], f"seed={seed}", *RECIPE_BF16)
    return Point(f"recipe-{recipe}-seed{seed}", sets, preset=RECIPE_PRESET, bf16=True)


# Evaluation's own cost on the models of recipe-default-seed1 (only the evaluate stage re-runs),
# against its 50 + 50 steps with the float32 Inception: (base steps, decoder steps, Inception precision)
EVAL_SETTINGS = ((25, 25, "fp32"), (50, 25, "fp32"), (25, 50, "fp32"), (25, 25, "bf16"))


def eval_cost_point(base_steps: int, decoder_steps: int, inception: str = "fp32") -> Point:
    x = recipe_point("default", RECIPE_SEEDS[0])
    sets = (*x.overrides, f"sample.base_steps={base_steps}", f"sample.decoder_steps={decoder_steps}")
    sets += (f"eval.inception_precision={inception}",) if inception != "fp32" else ()
    name = f"evalcost-b{base_steps}-d{decoder_steps}" + ("-i16" if inception == "bf16" else "")
    return Point(name, sets, preset=RECIPE_PRESET, bf16=True)


RECIPE = tuple(recipe_point(r, s) for s in RECIPE_SEEDS for r in RECIPES)
EVAL_COST = tuple(eval_cost_point(*s) for s in EVAL_SETTINGS)

DEFAULT = _lf(2.1)  # loss factor 2.1, λ(0) = 5, 500 stage-2 steps: the sweep preset itself
# Cheap and headline points first (a study cut short still answers the main questions), then the
# loss factors from the ends of the range inwards.
POINTS: tuple[Point, ...] = (
    DEFAULT,
    *(_steps("unified", s) for s in BUDGETS if s != 500),
    *(_target(t) for t in TARGETS),
    *(_steps("klvae", s) for s in sorted(BUDGETS, reverse=True)),
    Point("logsnr0-10.0", ("noise.logsnr=10.0",)),
    *(_lf(c) for c in (1.3, 3.0, 1.7, 2.5, 1.5, 1.9)),
    Point("logsnr0-3.0", ("noise.logsnr=3.0",)),
    *(Point(f"video-lf{c}", (f"unified.loss_factor={c}",), preset="preset=video") for c in VIDEO_LOSS_FACTORS),
    *CALIBRATION,
    *PRIOR_GAP,
    *_headline(),
    *_headline(extension=True),
    RECIPE[0],  # recipe-default-seed1, then evaluation's cost on its models (DVC re-runs evaluate only)
    *EVAL_COST,
    *RECIPE[1:],
)

STUDIES: dict[str, tuple[str, ...]] = {
    "rate-distortion": tuple(_lf(c).name for c in LOSS_FACTORS),
    "logsnr0": tuple(DEFAULT.name if v == 5.0 else f"logsnr0-{v}" for v in LOGSNR0),  # in the order of LOGSNR0
    "ul-vs-klvae": (*(DEFAULT.name if s == 500 else _steps("unified", s).name for s in BUDGETS),)
    + tuple(_steps("klvae", s).name for s in BUDGETS),
    "bitrate-targets": tuple(_target(t).name for t in TARGETS),
    "video": tuple(f"video-lf{c}" for c in sorted(VIDEO_LOSS_FACTORS)),
    "klvae-calibration": tuple(p.name for p in CALIBRATION),
    "prior-gap": tuple(PRIOR_GAP_RUNS),
    "headline": tuple(p.name for p in _headline()),
    "headline-extension": tuple(p.name for p in _headline(extension=True)),
    "recipe": tuple(p.name for p in RECIPE),
    "eval-cost": (RECIPE[0].name, *(p.name for p in EVAL_COST)),
}

BY_NAME = {p.name: p for p in POINTS}


def points(study: str | None = None, names: list[str] | None = None) -> list[Point]:
    """The points of one study (all studies when None), or the named ones, in run order."""
    every = set(BY_NAME) - set(STUDIES["headline-extension"])  # the extension runs only when asked for
    wanted = set(names or ()) | (set(STUDIES[study]) if study else set() if names else every)
    return [p for p in POINTS if p.name in wanted]


def exp_run(name: str, sets: list[str], queue: bool = False) -> list[str]:
    """`dvc exp run` arguments for one named experiment of `key=value` overrides (queued, or run
    now): what the studies and the ul-sweep flow both run."""
    return ["exp", "run", *(["--queue"] if queue else []), "--name", name, *[a for s in sets for a in ("-S", s)]]


def command(point: Point, preset: str | None = None) -> list[str]:
    """The `dvc exp run` arguments of a point: at its study's preset, or at `preset` for a quick
    check of the mechanics (`preset=ci`, `preset=video-ci`)."""
    sets = [preset or point.preset or PRESET, *point.overrides]
    return [*exp_run(point.name, sets), *([point.stop_at] if point.stop_at else [])]
