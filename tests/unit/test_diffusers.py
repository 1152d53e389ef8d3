"""The diffusers adapter (ul.integrations.diffusers), with the real diffusers package (pinned)."""

from __future__ import annotations

import sys

import pytest
import torch

from ul import Autoencoder, cli, extras
from ul.common.images import from_uint8
from ul.common.shards import ShardReader
from ul.core import rng
from ul.integrations.diffusers import UnifiedLatentsVAE


def test_from_pretrained_and_save_pretrained_round_trip(tiny_export, tmp_path):
    vae = UnifiedLatentsVAE.from_pretrained(tiny_export / "stage1")
    vae.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    again = UnifiedLatentsVAE.from_pretrained(tmp_path)
    a, b = vae.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ae = Autoencoder.load(tiny_export / "stage1")
    assert again.config.scaling_factor == pytest.approx(ae.scale)
    assert again.config.latents == ae.latents
    ours = ae.model.state_dict()
    assert all(torch.equal(v, ours[k.removeprefix("ul.")]) for k, v in b.items())


def test_latent_dist_and_decode_equal_the_autoencoder_at_the_same_seed(tiny_export):
    ae = Autoencoder.load(tiny_export / "stage1")
    vae = UnifiedLatentsVAE.from_pretrained(tiny_export / "stage1")
    x = from_uint8(ShardReader(tiny_export / "images")[[0, 1, 2]])
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
        z_clean = ae.encode(x)
        torch.testing.assert_close(dist.mean, ae.latents["alpha0"] * z_clean, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(dist.std, torch.full_like(dist.std, ae.latents["sigma0"]))
        z0 = dist.sample(torch.Generator().manual_seed(3))
        assert torch.equal(z0, ae.noisy(z_clean, torch.Generator().manual_seed(3)))
        for gens in (lambda: torch.Generator().manual_seed(4), lambda: rng.per_example(4, 0, 3)):
            ours = ae.decode(z0, 3, "ancestral", gens())
            theirs = vae.decode(z0, generator=gens(), num_inference_steps=3, sampler="ancestral").sample
            assert torch.equal(theirs, ours)


def test_a_missing_extra_is_one_error_line_naming_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hydra", None)  # `import hydra` now fails as if not installed
    monkeypatch.delitem(sys.modules, "ul.params")  # imported by conftest: import it afresh
    assert cli.main(["params", "-o", "unused.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: `ul params` needs the [pipeline] extra" in err
    assert "pip install 'unified-latents[pipeline]'" in err
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(extras.MissingExtra, match=r"needs the \[diffusers\] extra"):
        extras.require("diffusers", "ul.integrations.diffusers")
