"""The one typed schema of every parameter the stages use, loaded from `params.yaml`.

`conf/` (Hydra: `config.yaml` + the `preset` group) is composed by `dvc exp run` into the committed
`params.yaml`; stages never run Hydra themselves, they read `params.yaml` through `load()`, which
merges it into the structured config below so that unknown keys and wrong types fail at once,
then checks ranges. Integers given for float fields (`-S noise.logsnr=5`) are accepted as floats.

The values live in `conf/config.yaml` (the default run, = the `cpu` preset). The defaults below
repeat them, so that `Config()` and a partial mapping (an export written before a key existed)
mean that same run; tests/test_config.py fails, naming each key, where the two differ.
Devices are named `auto | cpu | cuda` everywhere (auto = cuda when one is visible).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A parameter is unknown, mistyped or out of range; the message names key and value."""


@dataclass
class DataConfig:
    source: str = (
        "builtin:fashion-mnist"  # builtin:NAME | file:///dir | https://...archive | s3://b/p | lakefs://repo/ref/p
    )
    sha256: str | None = None  # required for https:// archives
    resolution: int = 32
    channels: int = 1  # 1 = grey, 3 = RGB
    resize_mode: str = "pad"  # pad: centre-pad/crop without resampling; resize: shorter side, then centre crop
    max_train: int = 0  # 0 = all
    max_test: int = 0


@dataclass
class DecodeConfig:
    device: str = "auto"  # auto | cpu | cuda (DALI decodes with device="mixed" on cuda)
    on_error: str = "fail"  # fail | skip
    threads: int = 2
    batch_size: int = 256


@dataclass
class NoiseConfig:
    logsnr: float = 5.0  # λ(0): the fixed log-SNR of the encoder noise
    logsnr_min: float = -15.0  # λ_min: the prior's (and base model's) end of diffusion


@dataclass
class ULConfig:
    loss_factor: float = 2.1  # c_lf, the decoder loss factor
    # b, the decoder's sigmoid weighting bias: it sets the objective. Adapt it to resolution d as
    # b_ref + 2·log(d_ref/d), with d_ref = 32, where b_ref = 0 (the gpu preset: 2·log(32/256)).
    sigmoid_bias: float = 0.0
    decoder_logsnr_min: float = -15.0
    decoder_logsnr_max: float = 15.0
    # The decoder's cosine schedule shift: the variance of the loss estimate and the decoder sampler's
    # grid only. The weight is a function of λ, so the expected loss does not depend on it.
    decoder_logsnr_shift: float = 0.0


@dataclass
class EncoderConfig:
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # one stage per entry, /2 between stages
    blocks: int = 1  # residual blocks per stage
    patch: int = 1  # space-to-depth patching before the first stage (paper: 2)
    latent_channels: int = 4


@dataclass
class UNetConfig:
    """A UNet/UViT denoiser: conv stages, then `transformer_blocks` at the lowest resolution."""

    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    blocks: int = 1
    transformer_blocks: int = 0
    transformer_width: int = 0  # 0 = channels[-1]
    heads: int = 4
    dropout: float = 0.0


@dataclass
class BaseConfig:
    """Stage-2 base model on latents: a UNet/UViT plus its own sigmoid weighting bias."""

    net: UNetConfig = field(default_factory=lambda: UNetConfig(channels=[96, 128], blocks=2))
    sigmoid_bias: float = 0.0


@dataclass
class TrainConfig:
    """One training stage; the defaults are stage 1's (stage 2 overrides a few in `Config`)."""

    steps: int = 1300
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.998
    log_every: int = 25
    ckpt_every: int = 100
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads, 0 = all cores


@dataclass
class SampleConfig:
    sampler: str = "dpm2m"  # one of SAMPLERS; dpm2m: second order, < 1% variance error at 50 steps
    decoder_steps: int = 50
    base_steps: int = 50


@dataclass
class CacheConfig:
    """The latent caching stage: encode every training image once with the frozen encoder."""

    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 256


@dataclass
class EvalConfig:
    num_images: int = 500  # held-out images for PSNR, rate and rFID
    fid_num_samples: int = 500  # generated samples for gFID
    grid_size: int = 8  # the grids are grid_size × grid_size
    batch_size: int = 250
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class Config:
    preset: str = "cpu"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    ul: ULConfig = field(default_factory=ULConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    prior: UNetConfig = field(default_factory=lambda: UNetConfig(channels=[64], blocks=2))
    decoder: UNetConfig = field(default_factory=UNetConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    stage1: TrainConfig = field(default_factory=TrainConfig)
    stage2: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1500, batch_size=128, ckpt_every=250))
    cache: CacheConfig = field(default_factory=CacheConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _check(ok: bool, key: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {why}")


def _choice(key: str, value: str, choices: tuple) -> None:
    _check(value in choices, key, value, f"must be one of {', '.join(map(str, choices))}")


DEVICES = ("auto", "cpu", "cuda")
SAMPLERS = ("ddim", "ancestral", "dpm2m")  # the names of samplers.STEPS (a test keeps them equal)


def _check_train(name: str, t: TrainConfig) -> None:
    for k in ("steps", "batch_size", "log_every", "ckpt_every"):
        _check(getattr(t, k) > 0, f"{name}.{k}", getattr(t, k), "must be > 0")
    _check(t.warmup_steps >= 0, f"{name}.warmup_steps", t.warmup_steps, "must be >= 0")
    _check(math.isfinite(t.lr) and t.lr > 0, f"{name}.lr", t.lr, "must be finite and > 0")
    _check(0 <= t.ema_decay < 1, f"{name}.ema_decay", t.ema_decay, "must be in [0, 1)")
    _check(t.grad_clip > 0, f"{name}.grad_clip", t.grad_clip, "must be > 0")
    _check(t.threads >= 0, f"{name}.threads", t.threads, "must be >= 0")
    _choice(f"{name}.device", t.device, DEVICES)


def validate(cfg: Config) -> Config:
    """Range checks the types cannot express. Raises ConfigError naming key and value."""
    for key in (
        "noise.logsnr",
        "noise.logsnr_min",
        "ul.loss_factor",
        "ul.sigmoid_bias",
        "ul.decoder_logsnr_min",
        "ul.decoder_logsnr_max",
        "base.sigmoid_bias",
    ):
        v = OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else _get(cfg, key)
        _check(math.isfinite(v), key, v, "must be a finite number")
    n = cfg.noise
    _check(n.logsnr_min < n.logsnr, "noise.logsnr_min", n.logsnr_min, f"must be < noise.logsnr ({n.logsnr})")
    _check(cfg.ul.loss_factor > 0, "ul.loss_factor", cfg.ul.loss_factor, "must be > 0")
    if cfg.ul.loss_factor <= 1:
        warnings.warn(
            f"ul.loss_factor={cfg.ul.loss_factor} <= 1: the decoder gains nothing from the latent "
            "that the prior does not charge more for; expect posterior collapse",
            stacklevel=2,
        )
    _check(
        cfg.ul.decoder_logsnr_min < cfg.ul.decoder_logsnr_max,
        "ul.decoder_logsnr_min",
        cfg.ul.decoder_logsnr_min,
        "must be < ul.decoder_logsnr_max",
    )
    d = cfg.data
    _check(d.resolution >= 8, "data.resolution", d.resolution, "must be >= 8")
    _choice("data.channels", d.channels, (1, 3))
    _choice("data.resize_mode", d.resize_mode, ("pad", "resize"))
    _check(d.max_train >= 0 and d.max_test >= 0, "data.max_train", d.max_train, "limits must be >= 0")
    _choice("decode.device", cfg.decode.device, DEVICES)
    _choice("decode.on_error", cfg.decode.on_error, ("fail", "skip"))
    _check(cfg.decode.threads > 0, "decode.threads", cfg.decode.threads, "must be > 0")
    e = cfg.encoder
    _check(
        len(e.channels) > 0 and e.latent_channels > 0 and e.patch > 0,
        "encoder",
        e,
        "needs channels, latent_channels, patch > 0",
    )
    down = e.patch * 2 ** (len(e.channels) - 1)
    _check(
        d.resolution % down == 0,
        "data.resolution",
        d.resolution,
        f"must be divisible by the encoder's down-sampling {down}",
    )
    for name in ("prior", "decoder"):
        _check_net(name, getattr(cfg, name))
    _check_net("base.net", cfg.base.net)
    _check_train("stage1", cfg.stage1)
    _check_train("stage2", cfg.stage2)
    _choice("sample.sampler", cfg.sample.sampler, SAMPLERS)
    for k in ("decoder_steps", "base_steps"):
        _check(getattr(cfg.sample, k) > 0, f"sample.{k}", getattr(cfg.sample, k), "must be > 0")
    for k in ("num_images", "fid_num_samples", "grid_size", "batch_size"):
        _check(getattr(cfg.eval, k) > 0, f"eval.{k}", getattr(cfg.eval, k), "must be > 0")
    _choice("eval.device", cfg.eval.device, DEVICES)
    _check(cfg.cache.batch_size > 0, "cache.batch_size", cfg.cache.batch_size, "must be > 0")
    _choice("cache.device", cfg.cache.device, DEVICES)
    return cfg


def _check_net(name: str, u: UNetConfig) -> None:
    _check(len(u.channels) > 0 and all(c > 0 for c in u.channels), f"{name}.channels", u.channels, "must be positive")
    _check(u.blocks >= 1, f"{name}.blocks", u.blocks, "must be >= 1")
    _check(u.transformer_blocks >= 0, f"{name}.transformer_blocks", u.transformer_blocks, "must be >= 0")
    _check(0 <= u.dropout < 1, f"{name}.dropout", u.dropout, "must be in [0, 1)")
    width = u.transformer_width or u.channels[-1]
    _check(width % u.heads == 0, f"{name}.heads", u.heads, f"must divide the transformer width {width}")


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def from_dict(raw: dict | DictConfig) -> Config:
    """Merge a plain mapping into the schema; type and key errors become ConfigError."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), raw)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"{key}: {err.msg if hasattr(err, 'msg') else err}".splitlines()[0]) from None
    cfg: Config = OmegaConf.to_object(merged)  # plain dataclasses from here on
    return validate(cfg)


def load(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Load and validate `params.yaml`; `overrides` are dotlist strings (`noise.logsnr=3`)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameter file not found (run from the repository root)")
    return from_dict(with_overrides(OmegaConf.load(path), overrides))


def with_overrides(raw: dict | DictConfig, overrides: list[str] | None = None) -> dict | DictConfig:
    """`raw` with dotlist `overrides` (`noise.logsnr=3`) merged in; a malformed one is a ConfigError."""
    if not overrides:
        return raw
    try:
        return OmegaConf.merge(raw, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise ConfigError(str(err).splitlines()[0]) from None


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))
