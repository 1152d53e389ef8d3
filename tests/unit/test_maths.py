"""The maths of docs/method.md: schedules, sign conventions, and the loss terms as bounds."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ul.core.losses import NoiseDraw, decoder_loss, prior_loss, terminal_kl, weighted_elbo_term
from ul.core.schedules import CosineLogSNR, LinearLogSNR, alpha_sigma, bits, low_discrepancy_t


def test_alpha_sigma_at_logsnr_5():
    a, s = alpha_sigma(5.0)
    assert abs(float(a) - 0.99665) < 1e-5 and abs(float(s) - 0.08181) < 1e-5


@pytest.mark.parametrize("lam", [-15.0, -3.3, 0.0, 2.0, 15.0])
def test_variance_preserving(lam):
    a, s = alpha_sigma(torch.tensor(lam, dtype=torch.float64))
    assert float(a**2 + s**2) == pytest.approx(1.0, abs=1e-12)
    assert float(torch.log(a**2 / s**2)) == pytest.approx(lam, abs=1e-9)


@pytest.mark.parametrize("b", [-2.0, 0.0, 1.5])
def test_sigmoid_weight_identity(b):
    lam = torch.linspace(-15, 15, 101, dtype=torch.float64)
    lhs = torch.exp(lam) * torch.sigmoid(b - lam)
    rhs = math.exp(b) * torch.sigmoid(lam - b)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "sched", [LinearLogSNR(-15.0, 5.0), CosineLogSNR(-15.0, 15.0), CosineLogSNR(-10.0, 5.0, shift=-1.0)]
)
def test_schedule_endpoints_and_derivative(sched):
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    assert float(sched.logsnr(torch.tensor(0.0, dtype=torch.float64))) == pytest.approx(sched.logsnr_max, abs=1e-9)
    assert float(sched.logsnr(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(sched.logsnr_min, abs=1e-9)
    h = 1e-6
    fd = (sched.logsnr(t + h) - sched.logsnr(t - h)) / (2 * h)
    torch.testing.assert_close(sched.dlogsnr_dt(t), fd, rtol=1e-5, atol=1e-6)
    assert (sched.dlogsnr_dt(t) < 0).all(), "λ decreases in t, so every ELBO weight uses −dλ/dt > 0"


def test_low_discrepancy_is_stratified():
    t = low_discrepancy_t(64, torch.Generator().manual_seed(0))
    assert ((t >= 0) & (t < 1)).all()
    counts = torch.histc(t, bins=64, min=0, max=1)
    assert (counts == 1).all()


def _optimal_denoiser(s2):
    """Bayes-optimal x̂(z_t) for z_clean ~ N(0, s²I): α·s²/(α²·s² + σ²)·z_t."""

    def f(z_t, logsnr, cond=None):
        a, s = alpha_sigma(logsnr.view(-1, *([1] * (z_t.dim() - 1))))
        return a * s2 / (a**2 * s2 + s**2) * z_t

    return f


@pytest.mark.parametrize("s,logsnr_min", [(0.5, -15.0), (1.0, -15.0), (2.0, -3.0)])
def test_prior_loss_is_tight_gaussian_bitrate_bound(s, logsnr_min):
    """E[L_z] (terminal KL included) = ½·log(1 + s²·exp(λ0)) nats per dim for the optimal prior.
    At λ_min = −3 the terminal KL is 3% of the total: dropping it fails this test."""
    g = torch.Generator().manual_seed(1)
    logsnr0, n, dims = 5.0, 20000, 16
    sched = LinearLogSNR(logsnr_min, logsnr0)
    z = s * torch.randn(n, dims, 1, 1, generator=g, dtype=torch.float64)
    draw = NoiseDraw(low_discrepancy_t(n, g).double(), torch.randn(z.shape, generator=g, dtype=torch.float64))
    terms = prior_loss(z, _optimal_denoiser(s * s), sched, draw)
    per_dim = float(terms["prior"].mean()) / dims
    assert per_dim == pytest.approx(0.5 * math.log(1 + s * s * math.exp(logsnr0)), rel=0.01)


@pytest.mark.parametrize("logsnr_min", [-15.0, -10.0, -3.0])
def test_terminal_kl_is_the_kl_of_the_diffused_latent_to_the_standard_normal(logsnr_min):
    """KL(N(α1·z, σ1²) ‖ N(0, 1)) summed over each example's dimensions, against torch.distributions;
    a large latent scale is charged (the term grows with ‖z‖²), which is what makes L_z a bound."""
    z = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * torch.tensor(
        [0.01, 1.0, 100.0], dtype=torch.float64
    ).view(3, 1, 1, 1)
    a, s = alpha_sigma(torch.tensor(logsnr_min, dtype=torch.float64))
    expected = kl_divergence(Normal(a * z, s), Normal(torch.zeros_like(z), torch.ones_like(z))).flatten(1).sum(1)
    torch.testing.assert_close(terminal_kl(z, logsnr_min).double(), expected, rtol=1e-5, atol=1e-6)
    assert float(expected[2]) > float(expected[1]) > float(expected[0])


def test_terminal_kl_matches_torch_distributions():
    z = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    lam = -12.0
    a, s = alpha_sigma(torch.tensor(lam, dtype=torch.float64))
    ref = (
        torch.distributions.kl_divergence(torch.distributions.Normal(a * z, s), torch.distributions.Normal(0.0, 1.0))
        .flatten(1)
        .sum(1)
    )
    torch.testing.assert_close(terminal_kl(z, lam).double(), ref, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("loss_factor,bias", [(1.0, 0.0), (2.1, 0.0), (1.5, -2.0)])
def test_decoder_loss_matches_quadrature(loss_factor, bias):
    """For x ~ N(0, s²) and the optimal (unconditional) denoiser, E[L_x]/D =
    c_lf·∫ exp(λ)/2·sigmoid(b − λ)·s²/(1 + s²·exp(λ)) dλ over [λ_min, λ_max]."""
    s, n, dims = 0.7, 20000, 16
    sched = CosineLogSNR(-15.0, 15.0)
    g = torch.Generator().manual_seed(2)
    x = s * torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64)
    draw = NoiseDraw(low_discrepancy_t(n, g).double(), torch.randn(x.shape, generator=g, dtype=torch.float64))
    mc = float(decoder_loss(x, None, _optimal_denoiser(s * s), sched, draw, loss_factor, bias)["decoder"].mean()) / dims
    lam = torch.linspace(-15.0, 15.0, 200001, dtype=torch.float64)
    integrand = torch.exp(lam) / 2 * torch.sigmoid(bias - lam) * s * s / (1 + s * s * torch.exp(lam))
    assert mc == pytest.approx(loss_factor * float(torch.trapezoid(integrand, lam)), rel=0.01)


def _expected_decoder_loss(schedule, bias, s2=0.25, loss_factor=2.1, n=2**16):
    """E[L_x] per dimension for x ~ N(0, s²) and its optimal denoiser, through `decoder_loss`, and the
    variance over t of the inner expectation (the part of the estimate's variance that t adds).
    The t-integral is the midpoint rule on n nodes. The (x, ε) expectation is exact: x = s·(1, 1)
    and ε = (1, −1) are orthogonal, so a linear denoiser's squared error is 2·((1 − cα)²s² + c²σ²),
    twice its expectation per dimension."""
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    x = math.sqrt(s2) * torch.ones(n, 2, dtype=torch.float64)
    eps = torch.tensor([1.0, -1.0], dtype=torch.float64).expand(n, 2)
    loss = decoder_loss(x, None, _optimal_denoiser(s2), schedule, NoiseDraw(t, eps), loss_factor, bias)["decoder"] / 2
    return float(loss.mean()), float(loss.var())


def test_decoder_objective_moves_with_the_sigmoid_bias_not_the_schedule_shift():
    """The weight is a function of λ, so E[L_x] is one integral over [λ_min, λ_max] whatever the
    schedule: the shift (unified.decoder_logsnr_shift; −2.0794 was the gpu preset's) changes only the
    variance of the estimate. Moving the bias (the gpu preset's 2·log(32/256)) changes the objective."""
    s2, loss_factor = 0.25, 2.1
    plain, plain_var = _expected_decoder_loss(CosineLogSNR(-15.0, 15.0), 0.0)
    shifted, shifted_var = _expected_decoder_loss(CosineLogSNR(-15.0, 15.0, -2.0794), 0.0)
    assert shifted == pytest.approx(plain, rel=1e-8)
    lam = torch.linspace(-15.0, 15.0, 2000001, dtype=torch.float64)
    integrand = torch.exp(lam) / 2 * torch.sigmoid(-lam) * s2 / (1 + s2 * torch.exp(lam))
    assert plain == pytest.approx(loss_factor * float(torch.trapezoid(integrand, lam)), rel=1e-8)
    assert shifted_var > 2 * plain_var  # the shift is a variance knob
    for bias in (2 * math.log(64 / 256), 2 * math.log(32 / 256)):
        assert _expected_decoder_loss(CosineLogSNR(-15.0, 15.0), bias)[0] < 0.2 * plain


def test_losses_are_sums_not_means():
    """A latent twice as large (independent copies) costs twice: the terms sum over dimensions."""
    g = torch.Generator().manual_seed(3)
    sched = LinearLogSNR(-15.0, 5.0)
    z1, z2 = torch.randn(8, 4, 2, 2, generator=g), torch.randn(8, 4, 2, 2, generator=g)
    e1, e2 = torch.randn(z1.shape, generator=g), torch.randn(z2.shape, generator=g)
    t = low_discrepancy_t(8, g)
    den = _optimal_denoiser(1.0)
    l1 = prior_loss(z1, den, sched, NoiseDraw(t, e1))["prior"]
    l2 = prior_loss(z2, den, sched, NoiseDraw(t, e2))["prior"]
    both = prior_loss(torch.cat([z1, z2], 1), den, sched, NoiseDraw(t, torch.cat([e1, e2], 1)))["prior"]
    torch.testing.assert_close(both, l1 + l2, rtol=1e-5, atol=1e-4)
    assert float(both.mean()) > 1.5 * float(l1.mean())


def test_weighted_elbo_weight_is_positive_for_decreasing_schedules():
    y, y_hat = torch.ones(2, 3), torch.zeros(2, 3)
    out = weighted_elbo_term(y, y_hat, torch.tensor([0.0, 1.0]), torch.tensor([-20.0, -20.0]))
    assert (out > 0).all()


def test_bits_helper_units():
    out = bits(torch.tensor([math.log(2) * 64]), latent_shape=(4, 4, 4), image_shape=(1, 32, 32))
    assert out["bits_per_image"] == pytest.approx(64.0)
    assert out["bits_per_dim"] == pytest.approx(1.0)
    assert out["bits_per_pixel"] == pytest.approx(64 / 1024)
    assert out["bits_per_subpixel"] == pytest.approx(64 / 1024)
    assert bits(math.log(2) * 3 * 64, image_shape=(3, 8, 8))["bits_per_subpixel"] == pytest.approx(1.0)
