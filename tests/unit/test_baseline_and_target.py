"""The KL-VAE baseline (`latent: klvae`) and the bitrate target (`unified.target_bits_per_pixel`)."""

import copy
import math

import pytest
import torch
from conftest import preset_config

from ul.artifacts import export
from ul.core.klvae import KLVAE
from ul.core.model import BaseModel, UnifiedLatents, stage1_model
from ul.train.loop import StepDone
from ul.train.rate_target import RateController, callbacks


def test_latent_group_selects_the_baseline_with_the_same_latent_shape():
    ul_cfg, kl_cfg = preset_config("ci"), preset_config("ci", latent="klvae")
    model = stage1_model(kl_cfg)
    assert isinstance(stage1_model(ul_cfg), UnifiedLatents) and isinstance(model, KLVAE)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    assert model.encode(x).shape == (3, *UnifiedLatents(ul_cfg).z_shape)
    assert model.decode(model.encode(x)).shape == x.shape


def test_klvae_loss_is_l1_plus_weighted_kl_in_closed_form():
    cfg = preset_config("ci", latent="klvae", **{"klvae.kl_weight": 0.5})
    model = KLVAE(cfg)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    noise = model.draw_noise(2, torch.Generator().manual_seed(0))
    terms = model(x, noise)
    mean, logvar = model.posterior(x)
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["loss"], terms["reconstruction"] + 0.5 * kl)
    torch.testing.assert_close(model.rate_nats(x), kl)
    assert KLVAE.kl_nats(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0  # q = N(0, I) costs nothing


def test_klvae_base_model_learns_unit_variance_latents_and_samples_clean_ones(tmp_path):
    cfg = preset_config("ci", latent="klvae")
    base = BaseModel(cfg, latent_scale=1 / 4.0)
    assert not base.end_noisy and base.schedule.logsnr(torch.tensor([0.0])).item() == pytest.approx(15.0)
    z = base.sample_latents(2, 2, "ddim", torch.Generator().manual_seed(0))
    assert z.shape == (2, *base.z_shape)
    export.save(base, cfg, tmp_path / "s2", {"steps": 0})  # the scale travels with the weights
    loaded, _ = export.load(tmp_path / "s2")
    assert loaded.latent_scale.item() == 0.25
    ul_base = BaseModel(preset_config("ci"))
    assert ul_base.end_noisy and ul_base.schedule.logsnr(torch.tensor([0.0])).item() == pytest.approx(5.0)


@pytest.mark.parametrize("rate,direction", [(0.01, +1), (0.5, -1)])
def test_the_rate_controller_raises_the_rate_below_target_and_lowers_it_above(rate, direction):
    ctl = RateController(target=0.1, hold=5)
    log_c, ema = torch.tensor(math.log(2.0)), torch.tensor(-1.0)
    for step in range(1, 6):  # the hold: measured, not steered
        ctl.update(step, log_c, ema, rate)
    assert log_c.item() == torch.tensor(math.log(2.0)).item() and ema.item() == pytest.approx(rate)
    for step in range(6, 16):
        ctl.update(step, log_c, ema, rate)
    assert (log_c.item() - math.log(2.0)) * direction > 0
    assert ctl.c_min <= math.exp(log_c.item()) <= ctl.c_max


def test_the_rate_controller_settles_on_a_plant_that_lags_and_drifts():
    """A stand-in for the latent: its rate follows c_lf^1.7 (the rate-distortion study's slope) with
    a 30-step lag, while the prior's learning lowers it by 40% over the run. The controller must
    end within 4% of the target from either side, without sitting on a bound."""
    for target in (0.012, 0.027):
        ctl, log_c, ema = RateController(target=target, hold=150), torch.tensor(math.log(2.1)), torch.tensor(-1.0)
        rate = 0.0167
        for step in range(1, 501):
            drift = 1.4 - 0.4 * step / 500
            rate += (0.0167 * drift * (log_c.exp().item() / 2.1) ** 1.7 - rate) / 30
            ctl.update(step, log_c, ema, rate)
        assert rate == pytest.approx(target, rel=0.04)
        assert ctl.c_min < log_c.exp().item() < ctl.c_max


def test_a_rate_target_moves_the_loss_factor_inside_the_model_and_its_state():
    cfg = preset_config("ci", **{"unified.target_bits_per_pixel": 10.0})  # far above what a fresh model spends
    model = UnifiedLatents(cfg)
    (target,) = callbacks(model, cfg)
    assert target.controller.hold == round(0.3 * cfg.stage1.steps)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    noise = model.draw_noise(4, torch.Generator().manual_seed(0))
    terms = model(x, noise)
    ema = copy.deepcopy(model)
    before = model.loss_factor.item()
    logged = target(model, StepDone(target.controller.hold + 1, x, noise, ema, lambda t: t))
    # The rate steered on is the EMA model's, on this batch and noise.
    assert logged["ema_rate_bpp"] == pytest.approx(
        ema.rate_nats(ema.encode(x), noise.prior).mean().item() / math.log(2) / 1024
    )
    assert model.loss_factor.item() > before and "log_loss_factor" in model.state_dict()
    assert terms["loss_factor"].shape == (4,)  # logged per step in the training curve
    fixed = UnifiedLatents(preset_config("ci"))
    assert callbacks(fixed, preset_config("ci")) == []
    assert fixed.loss_factor.item() == pytest.approx(2.1)
