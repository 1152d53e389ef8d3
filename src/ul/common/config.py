"""The one typed schema of every parameter the stages use, loaded from `params.yaml`.

`conf/` (Hydra: `config.yaml` + the `preset` group) is composed by `dvc exp run` into the committed
`params.yaml`; stages never run Hydra themselves, they read `params.yaml` through `load()`, which
merges it into the structured config below so that unknown keys and wrong types fail at once,
then checks ranges. Integers given for float fields (`-S noise.logsnr=5`) are accepted as floats.

The values live in `conf/config.yaml` (the default run, = the `cpu` preset). The defaults below
repeat them, so that `Config()` and a partial mapping (an export written before a key existed)
mean that same run; tests/unit/test_config.py fails, naming each key, where the two differ.
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
class MovingMNISTConfig:
    """`builtin:moving-mnist`: `digits` MNIST digits (28×28) bouncing in `size`×`size` frames, clips of
    `data.frames` frames; training clips from train-split digits, held-out clips from test-split ones."""

    train_clips: int = 2000
    test_clips: int = 500
    size: int = 64
    digits: int = 2
    seed: int = 0


@dataclass
class DataConfig:
    source: str = (
        "builtin:fashion-mnist"  # builtin:NAME | file:///dir | https://...archive | s3://b/p | lakefs://repo/ref/p
    )
    sha256: str | None = None  # required for https:// archives
    resolution: int = 32
    channels: int = 1  # 1 = grey, 3 = RGB
    resize_mode: str = "pad"  # pad: centre-pad/crop without resampling; resize: shorter side, then centre crop
    background: str = "refuse"  # images with transparent pixels: refuse them, or flatten onto white | black
    max_train: int = 0  # 0 = all
    max_test: int = 0
    shard_mb: int = 256  # the raw files are packed into tar shards of at most this many MiB (ul.data.rawshards)
    # Video: clips of `frames` frames (0 = still images). Decoded clips are uint8 N×C×T×H×W, each
    # file's first `frames` frames at `fps` frames per second (0 = the file's own rate).
    frames: int = 0
    fps: float = 0.0
    moving_mnist: MovingMNISTConfig = field(default_factory=lambda: MovingMNISTConfig())


@dataclass
class DecodeConfig:
    device: str = "auto"  # auto | cpu | cuda (DALI decodes with device="mixed" on cuda)
    on_error: str = "fail"  # fail | skip
    drop: list = field(default_factory=list)  # on request: "duplicates" and/or "blank" (decode.images.DROPS)
    threads: int = 2
    batch_size: int = 256


@dataclass
class NoiseConfig:
    logsnr: float = 5.0  # λ(0): the fixed log-SNR of the encoder noise
    logsnr_min: float = -15.0  # λ_min: the prior's (and base model's) end of diffusion


@dataclass
class ULConfig:
    loss_factor: float = 2.5  # c_lf, the decoder loss factor
    # b, the decoder's sigmoid weighting bias: it sets the objective. Adapt it to resolution d as
    # b_ref + 2·log(d_ref/d), with d_ref = 32, where b_ref = 0 (the gpu preset: 2·log(32/256)).
    sigmoid_bias: float = 0.0
    decoder_logsnr_min: float = -15.0
    decoder_logsnr_max: float = 15.0
    # The decoder's cosine schedule shift: the variance of the loss estimate and the decoder sampler's
    # grid only. The weight is a function of λ, so the expected loss does not depend on it.
    decoder_logsnr_shift: float = 0.0
    # A requested latent rate: when set, stage 1 steers log c_lf towards it (ul.train.rate_target)
    target_bits_per_pixel: float | None = None


@dataclass
class KLVAEConfig:
    """The Stable-Diffusion-style baseline (`latent: klvae`): KL to N(0, I) with this weight, an L1
    pixel loss (SD adds LPIPS and a GAN, which have no offline weights here)."""

    kl_weight: float = 1.0e-6


@dataclass
class EncoderConfig:
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # one stage per entry, /2 between stages
    blocks: int = 1  # residual blocks per stage
    patch: int = 1  # space-to-depth patching before the first stage (paper: 2)
    latent_channels: int = 4
    time_downsample: int = 0  # video: how many of the /2 steps also halve time (latent T / 2^this)


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

    steps: int = 2000
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
    precision: str = "auto"  # auto | fp32 | bf16: autocast dtype (auto = bf16 where the CPU/GPU has it natively)


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
    fid_frames_per_clip: int = 0  # video: evenly spaced frames of each clip in the frame-level FID (0 = all)
    grid_size: int = 8  # the grids are grid_size × grid_size
    batch_size: int = 250
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class Config:
    preset: str = "cpu"
    latent: str = "ul"  # ul | klvae: which stage-1 autoencoder makes the latents
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    ul: ULConfig = field(default_factory=ULConfig)
    klvae: KLVAEConfig = field(default_factory=KLVAEConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    prior: UNetConfig = field(default_factory=lambda: UNetConfig(channels=[64], blocks=2))
    decoder: UNetConfig = field(default_factory=UNetConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    stage1: TrainConfig = field(default_factory=TrainConfig)
    stage2: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=128, ckpt_every=250))
    cache: CacheConfig = field(default_factory=CacheConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _check(ok: bool, key: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {why}")


def _choice(key: str, value: str, choices: tuple) -> None:
    _check(value in choices, key, value, f"must be one of {', '.join(map(str, choices))}")


DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")  # ul.train.precision: auto = bf16 where native, else fp32
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
    _choice(f"{name}.precision", t.precision, PRECISIONS)


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
    target = cfg.ul.target_bits_per_pixel
    _check(
        target is None or (math.isfinite(target) and target > 0),
        "ul.target_bits_per_pixel",
        target,
        "must be null or a finite number > 0",
    )
    _choice("latent", cfg.latent, ("ul", "klvae"))
    _check(
        math.isfinite(cfg.klvae.kl_weight) and cfg.klvae.kl_weight >= 0,
        "klvae.kl_weight",
        cfg.klvae.kl_weight,
        "must be finite and >= 0",
    )
    _check(cfg.eval.fid_frames_per_clip >= 0, "eval.fid_frames_per_clip", cfg.eval.fid_frames_per_clip, "must be >= 0")
    d = cfg.data
    _check(d.resolution >= 8, "data.resolution", d.resolution, "must be >= 8")
    _bounds(cfg)
    _choice("data.channels", d.channels, (1, 3))
    _choice("data.resize_mode", d.resize_mode, ("pad", "resize"))
    _choice("data.background", d.background, ("refuse", "white", "black"))
    _check(d.max_train >= 0 and d.max_test >= 0, "data.max_train", d.max_train, "limits must be >= 0")
    _check(d.shard_mb >= 1, "data.shard_mb", d.shard_mb, "must be >= 1 (MiB per raw shard)")
    _choice("decode.device", cfg.decode.device, DEVICES)
    _choice("decode.on_error", cfg.decode.on_error, ("fail", "skip"))
    for item in cfg.decode.drop:
        _choice("decode.drop", item, ("duplicates", "blank"))
    _check(cfg.decode.threads > 0, "decode.threads", cfg.decode.threads, "must be > 0")
    _check(0 <= d.frames <= 1024, "data.frames", d.frames, "must be in [0, 1024] (0 = still images)")
    _check(math.isfinite(d.fps) and 0 <= d.fps <= 1000, "data.fps", d.fps, "must be in [0, 1000] (0 = native)")
    m = d.moving_mnist
    _check(m.train_clips > 0 and m.test_clips > 0, "data.moving_mnist.train_clips", m.train_clips, "clips must be > 0")
    _check(28 <= m.size <= 1024, "data.moving_mnist.size", m.size, "must be in [28, 1024] (digits are 28×28)")
    _check(1 <= m.digits <= 8, "data.moving_mnist.digits", m.digits, "must be in [1, 8]")
    _check(0 <= m.seed <= MAX_SEED, "data.moving_mnist.seed", m.seed, f"must be in [0, {MAX_SEED}]")
    e = cfg.encoder
    _check(
        len(e.channels) > 0 and e.latent_channels > 0 and e.patch > 0,
        "encoder",
        e,
        "needs channels, latent_channels, patch > 0",
    )
    down = e.patch * 2 ** (len(e.channels) - 1)
    if d.frames:
        _check(e.patch == 1, "encoder.patch", e.patch, "must be 1 for video (data.frames > 0)")
        steps = len(e.channels) - 1
        _check(
            0 <= e.time_downsample <= steps, "encoder.time_downsample", e.time_downsample, f"must be in [0, {steps}]"
        )
        t_down = 2**e.time_downsample
        _check(d.frames % t_down == 0, "data.frames", d.frames, f"must be divisible by 2^time_downsample = {t_down}")
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
    refuse_interpolations(raw)
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
    return from_dict(with_overrides(read_yaml(path), overrides))


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


# ---- hostile parameter files (issue 9, class 4): params are data, not code, and sizes are bounded ----

MAX_PARAMS_BYTES = 1 << 20
LIMITS = {  # upper bounds, named with the key: beyond them a run cannot be meant
    "data.resolution": 4096,
    "data.moving_mnist.train_clips": 10_000_000,
    "data.moving_mnist.test_clips": 10_000_000,
    "decode.threads": 256,
    "decode.batch_size": 65536,
    "stage1.threads": 1024,
    "stage2.threads": 1024,
    "stage1.batch_size": 65536,
    "stage2.batch_size": 65536,
    "stage1.steps": 100_000_000,
    "stage2.steps": 100_000_000,
    "cache.batch_size": 65536,
    "eval.batch_size": 65536,
    "eval.num_images": 10_000_000,
    "eval.fid_num_samples": 10_000_000,
    "eval.grid_size": 64,
    "sample.decoder_steps": 100_000,
    "sample.base_steps": 100_000,
    "encoder.latent_channels": 4096,
    "encoder.patch": 64,
    "encoder.blocks": 64,
}
MAX_SEED = 2**32 - 1
MAX_WIDTH, MAX_DEPTH = 8192, 16  # channels per stage, stages per network


def _bounds(cfg: Config) -> None:
    for key, top in LIMITS.items():
        v = _get(cfg, key)
        _check(v <= top, key, v, f"must be <= {top:,}")
    _check(0 <= cfg.seed <= MAX_SEED, "seed", cfg.seed, f"must be in [0, {MAX_SEED}]")
    nets = {"encoder": cfg.encoder, "prior": cfg.prior, "decoder": cfg.decoder, "base.net": cfg.base.net}
    for name, net in nets.items():
        _check(len(net.channels) <= MAX_DEPTH, f"{name}.channels", net.channels, f"at most {MAX_DEPTH} stages")
        _check(max(net.channels, default=0) <= MAX_WIDTH, f"{name}.channels", net.channels, f"each <= {MAX_WIDTH}")
        for k, top in (("blocks", 64), ("transformer_blocks", 256), ("transformer_width", MAX_WIDTH), ("heads", 256)):
            if hasattr(net, k):
                _check(getattr(net, k) <= top, f"{name}.{k}", getattr(net, k), f"must be <= {top}")


def refuse_interpolations(raw, prefix: str = "", what: str = "parameters") -> None:
    """Refuse `${...}` anywhere in a parameter mapping (or `what` else: overrides), naming the key:
    an OmegaConf interpolation or resolver (`${oc.env:SECRET}`) would read the environment or run
    code when resolved."""
    if isinstance(raw, DictConfig) or (not isinstance(raw, dict | list) and OmegaConf.is_config(raw)):
        raw = OmegaConf.to_container(raw, resolve=False)
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, list) else ()
    for k, v in items:
        key = f"{prefix}.{k}" if prefix and not isinstance(k, int) else f"{prefix}[{k}]" if prefix else str(k)
        if isinstance(v, dict | list):
            refuse_interpolations(v, key, what)
        elif isinstance(v, str) and "${" in v:
            raise ConfigError(
                f"{key}={v!r}: interpolations and resolvers are refused in {what} (params are data, not code)"
            )


def read_yaml(path: Path) -> DictConfig:
    """A parameter file as a mapping: one ConfigError (naming the file) for a folder, a pipe, a
    file that is empty, too large, not YAML, not a mapping or with a key given twice."""
    import yaml

    class _UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise ConfigError(f"{path}: line {key_node.start_mark.line + 1}: key {key!r} is given twice")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    if not path.is_file():
        raise ConfigError(f"{path}: not a regular file (a parameter file is YAML)")
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a parameter file is at most {MAX_PARAMS_BYTES:,}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeys)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if data is None:
        raise ConfigError(f"{path}: is empty (or only comments); refusing to run on built-in defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: holds a {type(data).__name__}, not a mapping of parameters")
    refuse_interpolations(data)
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None
