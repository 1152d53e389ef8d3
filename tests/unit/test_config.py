"""The typed config: presets compose, bad values fail early and name key and value."""

import math
import warnings

import pytest
import torch
import yaml
from conftest import ROOT, preset_config
from omegaconf import OmegaConf

from ul.common.config import Config, ConfigError, from_dict, load, to_dict
from ul.common.config_checks import SAMPLERS
from ul.core import samplers
from ul.core.model import BaseModel, UnifiedLatents
from ul.core.networks import latent_shape
from ul.params import compose_params


def _keys(d, prefix=""):
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _keys(v, prefix + k + ".")
    return out


def test_conf_lists_every_schema_key():
    """DVC checks declared params against params.yaml: conf/config.yaml must hold every key (but
    the config groups' own keys, `preset` and `latent`, which their group files set)."""
    raw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/config.yaml"))
    raw.pop("defaults")
    assert _keys(raw) | {"preset", "latent"} == _keys(to_dict(Config()))


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_schema_defaults_are_the_values_of_conf():
    """conf/ is the source of every default; the dataclass defaults must say the same, value by value."""
    composed, defaults = _flat(compose_params(ROOT / "conf")), _flat(to_dict(Config()))
    differ = [
        f"{k}: conf/ {composed.get(k)!r}, config.py {defaults.get(k)!r}"
        for k in sorted(composed.keys() | defaults.keys())
        if composed.get(k) != defaults.get(k)
    ]
    assert not differ, differ


def test_committed_params_are_the_default_composition():
    assert yaml.safe_load((ROOT / "params.yaml").read_text()) == compose_params(ROOT / "conf")


@pytest.mark.parametrize("preset", ["ci", "cpu", "gpu", "sweep", "video", "video-ci"])
def test_presets_compose_and_validate(preset):
    d = compose_params(ROOT / "conf", [f"preset={preset}"])
    assert d["preset"] == preset
    assert from_dict(d).preset == preset


def test_integer_logsnr_is_accepted_as_float():
    cfg = preset_config("ci", **{"noise.logsnr": 5})
    assert isinstance(cfg.noise.logsnr, float) and cfg.noise.logsnr == 5.0


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("noise.logsnr", "high", "noise.logsnr"),
        ("noise.logsnr", "inf", "noise.logsnr='?inf'?: must be a finite number"),
        ("noise.logsnr", "nan", "noise.logsnr"),
        ("stage1.steps", "0", "stage1.steps=0: must be > 0"),
        ("stage2.steps", "-5", "stage2.steps=-5"),
        ("unified.loss_factor", "0", "unified.loss_factor=0.0: must be > 0"),
        ("unified.loss_factor", "-1.5", "unified.loss_factor=-1.5"),
        ("noise.logsnr_min", "6", "noise.logsnr_min=6.0: must be < noise.logsnr"),
        ("pixels.device", "tpu", "pixels.device='tpu': must be one of auto, cpu, cuda"),
        ("pixels.device", "gpu", "pixels.device='gpu': must be one of auto, cpu, cuda"),
        ("cache.device", "gpu", "cache.device='gpu': must be one of auto, cpu, cuda"),
        ("eval.device", "mps", "eval.device='mps': must be one of auto, cpu, cuda"),
        ("cache.batch_size", "0", "cache.batch_size=0: must be > 0"),
        ("data.resolution", "30", "divisible"),
        ("nosuch.key", "1", "nosuch"),
        ("noise.typo", "1", "typo"),
    ],
)
def test_bad_values_fail_naming_key_and_value(key, value, message):
    with pytest.raises(ConfigError, match=message):
        preset_config("ci", **{key: value})


def test_loss_factor_at_most_one_warns_of_collapse():
    with pytest.warns(UserWarning, match="posterior collapse"):
        preset_config("ci", **{"unified.loss_factor": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preset_config("ci", **{"unified.loss_factor": 1.3})


def test_load_names_missing_file_and_applies_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_params(ROOT / "conf", ["preset=ci"])))
    assert load(tmp_path / "params.yaml", ["noise.logsnr=3"]).noise.logsnr == 3.0


def test_gpu_preset_adapts_the_decoder_weighting_to_its_resolution():
    """Resolution adaptation moves the decoder's sigmoid bias by 2·log(d_ref/d), the reference being
    the default preset (32 pixels, b = 0); the schedule shift would not change the objective."""
    ref, gpu = preset_config("cpu"), preset_config("gpu")
    adapted = ref.unified.sigmoid_bias + 2 * math.log(ref.data.resolution / gpu.data.resolution)
    assert gpu.unified.sigmoid_bias == pytest.approx(adapted, abs=1e-4)


def test_sampler_choices_are_the_samplers():
    assert SAMPLERS == tuple(samplers.STEPS)


@pytest.mark.slow
def test_gpu_preset_builds_and_steps_at_batch_one():
    """The paper's shapes: ResNet encoder with 2×2 patching, UViT decoder, ViT prior, 2-stage base.
    The step runs the same networks (same modules and parameter shapes) on 64² images: at 256² one
    CPU step of these 400 M parameters takes about a minute, and nothing in it depends on the size."""
    cfg = preset_config("gpu")
    assert latent_shape(cfg) == (32, 16, 16)  # 256² input, 16× down-sampling, 32 channels
    torch.manual_seed(0)
    model = UnifiedLatents(preset_config("gpu", **{"data.resolution": 64}))
    assert model.z_shape == (32, 4, 4)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    terms = model(x, model.draw_noise(1, torch.Generator().manual_seed(0)))
    terms["loss"].mean().backward()
    assert torch.isfinite(terms["loss"]).all()
    assert model.encoder.net[0].weight.grad is not None and model.decoder.net.transformer[0].qkv.weight.grad is not None
    base = BaseModel(cfg)
    out = base(torch.randn(1, *base.z_shape), base.draw_noise(1, torch.Generator().manual_seed(0)))
    out["loss"].mean().backward()
    assert base.denoiser.net.transformer is not None and torch.isfinite(out["loss"]).all()
