"""The Python API on an export (tests/conftest.py's tiny_export): results independent of the batch,
gradients, precision, the latents' statistics and `ul info`."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from ul import Autoencoder, LatentDiffusion, cli
from ul.common.images import from_uint8
from ul.common.shards import ShardReader
from ul.core import rng


@pytest.fixture(scope="module")
def ae(tiny_export):
    return Autoencoder.load(tiny_export / "stage1")


@pytest.fixture(scope="module")
def x(tiny_export):
    return from_uint8(ShardReader(tiny_export / "images")[list(range(6))])


def test_one_generator_per_image_makes_results_independent_of_the_batch(ae, x):
    whole = ae.reconstruct(x, 3, "ancestral", rng.per_example(7, 0, 6))
    parts = torch.cat(
        [
            ae.reconstruct(x[:2], 3, "ancestral", rng.per_example(7, 0, 2)),
            ae.reconstruct(x[2:], 3, "ancestral", rng.per_example(7, 2, 4)),
        ]
    )
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)
    rates = ae.rate(x, 2, generator=rng.per_example(7, 0, 6))
    torch.testing.assert_close(
        torch.cat(
            [
                ae.rate(x[:1], 2, generator=rng.per_example(7, 0, 1)),
                ae.rate(x[1:], 2, generator=rng.per_example(7, 1, 5)),
            ]
        ),
        rates,
    )
    # one generator for the batch is one stream: split the batch and the draws move
    shared = torch.cat(
        [
            ae.reconstruct(x[:2], 3, "ancestral", torch.Generator().manual_seed(7)),
            ae.reconstruct(x[2:], 3, "ancestral", torch.Generator().manual_seed(7)),
        ]
    )
    assert (shared - ae.reconstruct(x, 3, "ancestral", torch.Generator().manual_seed(7))).abs().max() > 1e-3
    with pytest.raises(ValueError, match="3 generators for a batch of 6"):
        ae.noisy(ae.encode(x), rng.per_example(0, 0, 3))


def test_per_example_generators_are_distinct_streams():
    a, b = (torch.randn(4, generator=g) for g in rng.per_example(0, 0, 2))
    assert not torch.equal(a, b)
    torch.testing.assert_close(torch.randn(4, generator=rng.per_example(0, 1, 1)[0]), b)


def test_gradients_flow_to_inputs_that_require_them(ae, x):
    model = copy.deepcopy(ae.model)
    with torch.no_grad():  # the untrained decoder's last layer is zero: nudge every weight off zero
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.02)
    ae = Autoencoder(model)
    xg = x[:2].clone().requires_grad_()
    ae.encode(xg).square().sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0 and torch.isfinite(xg.grad).all()
    z0 = ae.noisy(ae.encode(x[:2]), torch.Generator().manual_seed(0)).requires_grad_()
    ae.decode(z0, steps=2, generator=torch.Generator().manual_seed(1)).sum().backward()
    assert z0.grad.abs().sum() > 0
    assert not ae.reconstruct(x[:2], 2).requires_grad  # frozen weights, plain input: no graph kept
    assert not any(p.requires_grad for p in ae.model.parameters())


def test_bf16_runs_under_autocast_and_returns_float32(tiny_export, ae, x):
    bf16 = Autoencoder.load(tiny_export / "stage1", precision="bf16")
    z32, z16 = ae.encode(x), bf16.encode(x)
    assert z16.dtype == torch.float32 and not torch.equal(z16, z32)
    assert (z16 - z32).norm() / z32.norm() < 0.05
    with pytest.raises(ValueError, match="precision='fp16'"):
        Autoencoder.load(tiny_export / "stage1", precision="fp16")


def test_the_latent_statistics_describe_the_latents_and_the_scale_makes_them_unit_variance(tiny_export, ae):
    lat = ae.latents
    z = ae.encode(from_uint8(ShardReader(tiny_export / "images")[list(range(96))])).double()
    mean, std = z.mean((0, 2, 3)), z.std((0, 2, 3), unbiased=False)
    torch.testing.assert_close(
        torch.tensor(lat["z_clean"]["mean_per_channel"], dtype=torch.float64), mean, atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        torch.tensor(lat["z_clean"]["std_per_channel"], dtype=torch.float64), std, atol=1e-6, rtol=0
    )
    s = lat["z_clean"]["std"]
    assert lat["alpha0"] ** 2 == pytest.approx(1 / (1 + math.exp(-ae.logsnr0)))
    assert lat["alpha0"] ** 2 + lat["sigma0"] ** 2 == pytest.approx(1)
    assert lat["scaled_logsnr"] == pytest.approx(ae.logsnr0 + 2 * math.log(s))
    z0 = ae.noisy(z.float(), torch.Generator().manual_seed(0)).double() * ae.scale
    centred = z0 - z0.mean((0, 2, 3), keepdim=True)
    assert centred.pow(2).mean().item() == pytest.approx(1, abs=0.05)
    assert lat["shape"] == list(ae.latent_shape) and lat["count"] == 96
    assert lat["rate"]["bits_per_image"] > 0


def test_ul_info_prints_what_a_user_of_the_latents_needs(tiny_export, capsys):
    folder = tiny_export / "stage1"
    assert cli.main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    lat = json.loads((folder / "config.json").read_text())["latents"]
    for text in (f"{lat['scale']:.4g}", f"{lat['scaled_logsnr']:.3g}", f"{lat['sigma0']:.4g}", "4×8×8", "bits / image"):
        assert text in out
    assert cli.main(["info", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latents"] == lat
    assert cli.main(["info", str(tiny_export / "nothing")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_the_latent_diffusion_samples_per_image(tiny_export):
    ld = LatentDiffusion.load(tiny_export / "stage1", tiny_export / "stage2")
    a = ld.sample(3, 2, 2, generator=rng.per_example(1, 0, 3))
    b = ld.sample(1, 2, 2, generator=rng.per_example(1, 2, 1))
    torch.testing.assert_close(a[2:], b, atol=1e-5, rtol=0)


def test_the_model_card_carries_hub_metadata_and_the_latents(tiny_export):
    import yaml

    text = (tiny_export / "stage1" / "README.md").read_text()
    head, sep, body = text.removeprefix("---\n").partition("\n---\n")
    assert text.startswith("---\n") and sep
    meta = yaml.safe_load(head)
    assert meta["library_name"] == "unified-latents" and meta["license"] == "apache-2.0"
    assert {"unified-latents", "autoencoder"} <= set(meta["tags"])
    assert meta["datasets"] == ["zalando-datasets/fashion_mnist"]  # the ci preset's public source
    assert "metrics" not in meta  # not evaluated at training time
    lat = json.loads((tiny_export / "stage1" / "config.json").read_text())["latents"]
    assert "## Latents" in body and f"{lat['scale']:.4g}" in body
    assert (
        yaml.safe_load((tiny_export / "stage2" / "README.md").read_text().split("---\n")[1])["tags"][-1] == "base-model"
    )
