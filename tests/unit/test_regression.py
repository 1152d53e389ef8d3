"""Pinned stage-1 loss terms at the `ci` preset, seed 0 (tools/regression_losses.py regenerates
them): a silent change of the maths, the networks, the noise draws or their order, the optimiser or
the EMA moves these numbers, while every behavioural test may still pass.

Tolerance: the same CPU reproduces them exactly; other CPUs' float kernels (AVX2 vs AVX-512, oneDNN
versions) move the initial loss by about 1e-6 relative and the loss after 5 updates by less than
1e-4, while swapping two noise draws moves them by percent."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import regression_losses  # noqa: E402


@pytest.fixture(scope="module")
def measured():
    return regression_losses.loss_terms()


@pytest.mark.parametrize("step, rel", [("1", 1e-4), ("6", 1e-3)])
def test_the_ci_loss_terms_are_the_pinned_ones(measured, step, rel):
    pinned = json.loads(regression_losses.PINNED.read_text())
    for term, value in pinned[step].items():
        assert measured[step][term] == pytest.approx(value, rel=rel), (step, term)


def test_the_pin_would_catch_reordered_noise_draws(measured, monkeypatch):
    """The test is not vacuous: the same run with the prior's and the decoder's draws swapped in
    order (a plausible refactor slip) leaves the tolerance far behind."""
    from ul.core import model as model_module
    from ul.core.losses import NoiseDraw

    def swapped(self, batch, generator):
        decoder = NoiseDraw.draw(batch, self.x_shape, generator)
        prior = NoiseDraw.draw(batch, self.z_shape, generator)
        return model_module.StepNoise(
            prior, decoder, model_module.torch.randn((batch, *self.z_shape), generator=generator)
        )

    monkeypatch.setattr(model_module.UnifiedLatents, "draw_noise", swapped)
    other = regression_losses.loss_terms()
    assert other["1"]["loss"] != pytest.approx(measured["1"]["loss"], rel=1e-3)
