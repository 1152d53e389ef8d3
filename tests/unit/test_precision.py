"""Mixed precision (`stage1.precision` / `stage2.precision`): what auto | fp32 | bf16 resolve to, and
that under bf16 autocast the loss terms, parameters, optimizer state and EMA stay float32."""

import pytest
import torch
from conftest import preset_config

from ul.common.config import ConfigError, from_dict, to_dict
from ul.core.model import BaseModel, stage1_model
from ul.train import checkpoint, precision
from ul.train.loop import CKPT, train


def test_precision_resolves():
    assert precision.autocast_dtype("fp32", "cpu") is None
    assert precision.autocast_dtype("bf16", "cpu") is torch.bfloat16
    native = precision.cpu_has_native_bf16()
    assert precision.autocast_dtype("auto", "cpu") is (torch.bfloat16 if native else None)
    assert precision.name("auto", "cpu") == ("bf16" if native else "fp32")
    with pytest.raises(ValueError, match="fp16"):
        precision.autocast_dtype("fp16", "cpu")
    with precision.autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16
    with precision.autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")


def test_auto_follows_the_cpu_capabilities(monkeypatch):
    """x86: AVX-512 BF16 or AMX-BF16 means native bf16; without either, auto keeps fp32."""
    precision.cpu_has_native_bf16.cache_clear()
    try:
        monkeypatch.setattr("platform.machine", lambda: "x86_64")
        for caps, native in (({"avx512_bf16": True}, True), ({"amx_bf16": True}, True), ({"avx2": True}, False)):
            monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps)
            precision.cpu_has_native_bf16.cache_clear()
            assert precision.cpu_has_native_bf16() is native, caps
            assert precision.name("auto", "cpu") == ("bf16" if native else "fp32")
    finally:
        precision.cpu_has_native_bf16.cache_clear()


def test_precision_is_a_checked_param(ci_cfg):
    raw = to_dict(ci_cfg)
    assert raw["stage1"]["precision"] == raw["stage2"]["precision"] == "auto"
    raw["stage2"]["precision"] = "fp16"
    with pytest.raises(ConfigError, match="stage2.precision='fp16'"):
        from_dict(raw)


@pytest.mark.parametrize("latent", ["unified", "klvae"])
def test_bf16_terms_are_float32(ci_cfg, latent):
    ci_cfg.latent = latent
    gen = torch.Generator().manual_seed(0)
    model = stage1_model(ci_cfg)
    x = torch.rand(4, *model.x_shape) * 2 - 1
    base = BaseModel(ci_cfg)
    z = torch.randn(4, *base.z_shape)
    with precision.autocast("bf16", "cpu"):
        terms = model(x, model.draw_noise(4, gen))
        base_terms = base(z, base.draw_noise(4, gen))
    for k, v in {**terms, **{f"base.{k}": v for k, v in base_terms.items()}}.items():
        assert v.dtype is torch.float32, k


def test_bf16_training_keeps_float32_state(tmp_path):
    """Parameters, AdamW moments and EMA are float32 after bf16 steps (autocast casts copies)."""
    cfg = preset_config("tiny", **{"stage1.steps": 2, "stage1.batch_size": 4, "stage1.precision": "bf16"})
    torch.manual_seed(0)
    model = stage1_model(cfg)
    images = torch.rand(16, 1, 16, 16) * 2 - 1
    ema = train(model, lambda i: images[torch.as_tensor(i)], 16, cfg.stage1, tmp_path, to_dict(cfg), progress=False)
    ck = checkpoint.load(tmp_path / CKPT)
    floats = [v for v in ck["model"].values() if v.is_floating_point()]
    floats += [v for v in ck["ema"].values() if v.is_floating_point()]
    floats += [t for s in ck["optimizer"]["state"].values() for k, t in s.items() if k != "step"]
    assert floats and all(t.dtype is torch.float32 for t in floats)
    assert all(p.dtype is torch.float32 for p in ema.parameters())
