"""The compiled training path (ul.common.compiled, `stageN.compile`, `sample.compile`): the same losses and weights as
eager within float tolerance, and a compilation that fails falls back to eager with one warning."""

from __future__ import annotations

import csv
import warnings

import pytest
import torch
from project import ROOT

from ul.common import compiled
from ul.common.config import to_dict
from ul.common.config_checks import COMPILE_MODES
from ul.core.model import UnifiedLatents
from ul.params import preset_config
from ul.train.loop import train

IMAGES = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1


def _run(tmp_path, mode: str):
    cfg = preset_config(ROOT / "conf", "tiny")
    cfg.stage1.batch_size, cfg.stage1.steps, cfg.stage1.log_every, cfg.stage1.compile = 4, 3, 1, mode
    torch.manual_seed(0)
    out = tmp_path / mode
    ema = train(
        UnifiedLatents(cfg), lambda i: IMAGES[torch.as_tensor(i)], 16, cfg.stage1, out, to_dict(cfg),
        log_path=out / "log.tsv", progress=False,
    )  # fmt: skip
    with open(out / "log.tsv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f, delimiter="\t")]
    return losses, ema.state_dict()


def test_the_modes_are_the_schemas():
    assert compiled.MODES == COMPILE_MODES
    assert compiled.wanted("auto", torch.device("cuda")) and not compiled.wanted("auto", torch.device("cpu"))
    assert compiled.wanted("inductor", torch.device("cpu")) and not compiled.wanted("eager", torch.device("cuda"))


def test_a_failed_compilation_falls_back_to_eager_with_one_warning(tmp_path, monkeypatch):
    def broken(module):
        def call(*args, **kwargs):
            raise RuntimeError("InductorError: no C++ compiler found\nmore lines")

        return call

    eager_losses, eager_w = _run(tmp_path, "eager")
    monkeypatch.setattr(torch, "compile", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses, w = _run(tmp_path, "inductor")
    said = [str(c.message) for c in caught if "torch.compile" in str(c.message)]
    assert said == ["train: torch.compile failed (InductorError: no C++ compiler found); going on in eager mode"]
    assert losses == eager_losses and all(torch.equal(w[k], eager_w[k]) for k in w)


@pytest.mark.slow
def test_inductor_trains_as_eager_does_within_float_tolerance(tmp_path):
    eager_losses, eager_w = _run(tmp_path, "eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a fallback here would hide what is tested
        losses, w = _run(tmp_path, "inductor")
    assert losses == pytest.approx(eager_losses, rel=1e-4)  # each step's loss: the check that bites
    # The weights can only be bounded: the decoder's zero-initialised output layer gives its inputs an
    # exactly zero gradient in eager mode and float noise of ~1e-12 compiled, which Adam's first
    # steps turn into moves of up to lr either way (as in tests/unit/test_train.py's torchrun check).
    lr, steps = preset_config(ROOT / "conf", "tiny").stage1.lr, 3
    for k in w:
        torch.testing.assert_close(w[k], eager_w[k], rtol=0, atol=2 * steps * lr)


def _tiny_pair(mode: str):
    from ul.core.model import BaseModel

    cfg = preset_config(ROOT / "conf", "tiny", [f"sample.compile={mode}"])
    torch.manual_seed(0)
    model, base = UnifiedLatents(cfg).eval(), BaseModel(cfg, latent_scale=4.0).eval()
    for net in (model.decoder.net, base.denoiser.net):  # zero-initialised outputs: make them say something
        torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    return model, base


@torch.no_grad()
def _generate(model, base):
    from ul.core import samplers

    return samplers.generate(base, model, 3, 4, 4, "dpm2m", torch.Generator().manual_seed(0))


def test_sampling_falls_back_to_eager_with_one_warning_and_the_same_images(monkeypatch):
    def broken(module):
        def call(*args, **kwargs):
            raise RuntimeError("InductorError: no C++ compiler found")

        return call

    want = _generate(*_tiny_pair("eager"))
    monkeypatch.setattr(torch, "compile", broken)
    model, base = _tiny_pair("inductor")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _generate(model, base)
        again = _generate(model, base)  # compiled once per model: no second attempt, no second warning
    said = [str(c.message) for c in caught if "torch.compile" in str(c.message)]
    assert said == ["sampling: torch.compile failed (InductorError: no C++ compiler found); going on in eager mode"] * 2
    assert torch.equal(got, want) and torch.equal(again, want)
    assert not any("_sampling_nets" in k for k in model.state_dict())


@pytest.mark.slow
def test_inductor_samples_as_eager_does_within_float_tolerance():
    want = _generate(*_tiny_pair("eager"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        got = _generate(*_tiny_pair("inductor"))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
