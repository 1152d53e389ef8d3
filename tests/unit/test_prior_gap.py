"""ul.results.prior_gap: a fresh prior trained on a stage-1 run's frozen latents, measured against
the joint prior on the same noise draws (the λ(0) study's test of how loose the rate bound is)."""

from __future__ import annotations

import copy

import pytest

from ul.artifacts import export
from ul.common.shards import ShardReader
from ul.core.model import UnifiedLatents
from ul.results import prior_gap


@pytest.fixture(scope="module")
def model_and_images(tiny_export):
    model, _ = export.load(tiny_export / "stage1", expect=UnifiedLatents)
    return model, ShardReader(tiny_export / "images")


def test_both_priors_are_measured_on_the_same_draws(model_and_images):
    model, images = model_and_images
    z = prior_gap.clean_latents(model, images, batch_size=32)
    assert z.shape == (len(images), *model.z_shape)
    same = prior_gap.bound_bits(model.prior, model, z, seed=3, draws=2)
    assert prior_gap.bound_bits(copy.deepcopy(model.prior), model, z, seed=3, draws=2) == same  # to the bit
    assert prior_gap.bound_bits(model.prior, model, z, seed=4, draws=2) != same  # the draws do enter


def test_a_fresh_prior_trained_on_the_frozen_latents_tightens_an_untrained_bound(model_and_images):
    model, images = model_and_images  # the tiny export's prior is untrained: a trained one must beat it
    r = prior_gap.measure(model, images, images, steps=60, seed=0, draws=2, checks=3)
    steps = [s for s, _ in r["fresh_curve"]]
    assert steps == [20, 40, 60] and r["fresh_bits_per_image"] == r["fresh_curve"][-1][1]
    assert r["fresh_curve"][-1][1] < r["fresh_curve"][0][1]
    assert r["saved_bits_per_image"] > 0 and 0 < r["saved_fraction"] < 1
    assert r["saved_bits_per_image"] == pytest.approx(r["joint_bits_per_image"] - r["fresh_bits_per_image"])


@pytest.mark.parametrize(
    "high, low, expected",
    [
        ((0.30, 0.25), (0.05, 0.04), "reproduced"),
        ((0.30, 0.25), (0.05, 0.40), "not resolved at 2 seeds"),  # loose at 10, but not looser than at 5
        ((0.03, 0.05), (0.01, 0.01), "refuted"),
        ((0.30, 0.05), (0.01, 0.01), "not resolved at 2 seeds"),
    ],
)
def test_the_registered_verdict_rule(high, low, expected):
    saved = {(10.0, s): h for s, h in zip((1, 2), high)} | {(5.0, s): lo for s, lo in zip((1, 2), low)}
    assert prior_gap.verdict(saved) == expected
    del saved[5.0, 2]
    assert prior_gap.verdict(saved) == "not run yet"
