"""Range checks of the parameter schema (ul.common.config, whose Config they take: it imports this
module, so the types are not named here) that its types cannot express: choices,
bounds named with their key, every float finite, and `${...}` refused anywhere (params are data,
not code). Each failure is one ConfigError naming key and value."""

from __future__ import annotations

import dataclasses
import math
import re
import warnings

from omegaconf import DictConfig, OmegaConf

from ul.common.errors import ConfigError


def _check(ok: bool, key: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {why}")


def _choice(key: str, value: str, choices: tuple) -> None:
    _check(value in choices, key, value, f"must be one of {', '.join(map(str, choices))}")


DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("auto", "eager", "inductor")  # ul.common.compiled (a test keeps them equal)
LR_DECAYS = ("none", "cosine")  # ul.train.loop.learning_rate
INCEPTION_PRECISIONS = ("fp32", "bf16")  # ul.eval.inception: bf16 only with the fused graph
PRECISIONS = ("auto", "fp32", "bf16")  # ul.train.precision: auto = bf16 where native, else fp32
SAMPLERS = ("ddim", "ancestral", "dpm2m")  # the names of samplers.STEPS (a test keeps them equal)


def _check_train(name: str, t) -> None:
    for k in ("steps", "batch_size", "log_every", "ckpt_every"):
        _check(getattr(t, k) > 0, f"{name}.{k}", getattr(t, k), "must be > 0")
    _check(t.warmup_steps >= 0, f"{name}.warmup_steps", t.warmup_steps, "must be >= 0")
    _check(math.isfinite(t.lr) and t.lr > 0, f"{name}.lr", t.lr, "must be finite and > 0")
    _check(0 <= t.ema_decay < 1, f"{name}.ema_decay", t.ema_decay, "must be in [0, 1)")
    _check(t.grad_clip > 0, f"{name}.grad_clip", t.grad_clip, "must be > 0")
    _check(t.threads >= 0, f"{name}.threads", t.threads, "must be >= 0")
    _choice(f"{name}.device", t.device, DEVICES)
    _choice(f"{name}.lr_decay", t.lr_decay, LR_DECAYS)
    _choice(f"{name}.precision", t.precision, PRECISIONS)
    _choice(f"{name}.compile", t.compile, COMPILE_MODES)
    _check_launch(f"{name}.launch", t.launch, t.batch_size)


# host:port, the host a name or an IPv4/IPv6 address: nothing a shell or torchrun would read as more
ENDPOINT = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\]):[0-9]{1,5}")


def _check_launch(name: str, launch, batch_size: int | None = None) -> None:
    for k in ("nnodes", "nproc_per_node"):
        _check(1 <= getattr(launch, k) <= 4096, f"{name}.{k}", getattr(launch, k), "must be in [1, 4096]")
    _check(0 <= launch.max_restarts <= 100, f"{name}.max_restarts", launch.max_restarts, "must be in [0, 100]")
    _check(1 <= launch.timeout_s <= 86400, f"{name}.timeout_s", launch.timeout_s, "must be in [1, 86400] seconds")
    ep = launch.rdzv_endpoint
    ok = ep == "" or (ENDPOINT.fullmatch(ep) is not None and int(ep.rsplit(":", 1)[1]) <= 65535)
    _check(ok, f"{name}.rdzv_endpoint", ep, "must be host:port")
    _check(launch.nnodes == 1 or ep != "", f"{name}.rdzv_endpoint", ep, "must name host:port when nnodes > 1")
    world = launch.nnodes * launch.nproc_per_node
    _check(
        batch_size is None or batch_size % world == 0,
        f"{name}.launch",
        f"{world} processes",
        f"must divide batch_size {batch_size}",
    )


def validate(cfg):
    """Range checks the types cannot express. Raises ConfigError naming key and value."""
    _finite(cfg)
    n = cfg.noise
    _check(n.logsnr_min < n.logsnr, "noise.logsnr_min", n.logsnr_min, f"must be < noise.logsnr ({n.logsnr})")
    _check(cfg.unified.loss_factor > 0, "unified.loss_factor", cfg.unified.loss_factor, "must be > 0")
    if cfg.unified.loss_factor <= 1:
        warnings.warn(
            f"unified.loss_factor={cfg.unified.loss_factor} <= 1: the decoder gains nothing from the latent "
            "that the prior does not charge more for; expect posterior collapse",
            stacklevel=2,
        )
    _check(
        cfg.unified.decoder_logsnr_min < cfg.unified.decoder_logsnr_max,
        "unified.decoder_logsnr_min",
        cfg.unified.decoder_logsnr_min,
        "must be < unified.decoder_logsnr_max",
    )
    target = cfg.unified.target_bits_per_pixel
    _check(
        target is None or (math.isfinite(target) and target > 0),
        "unified.target_bits_per_pixel",
        target,
        "must be null or a finite number > 0",
    )
    _choice("latent", cfg.latent, ("unified", "klvae"))
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
    _choice("pixels.device", cfg.pixels.device, DEVICES)
    _choice("pixels.on_error", cfg.pixels.on_error, ("fail", "skip"))
    for item in cfg.pixels.drop:
        _choice("pixels.drop", item, ("duplicates", "blank"))
    _check(cfg.pixels.threads > 0, "pixels.threads", cfg.pixels.threads, "must be > 0")
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
    _check_launch("cache.launch", cfg.cache.launch)
    _check_launch("eval.launch", cfg.eval.launch)
    _choice("sample.sampler", cfg.sample.sampler, SAMPLERS)
    _choice("sample.compile", cfg.sample.compile, COMPILE_MODES)
    _choice("eval.inception_precision", cfg.eval.inception_precision, INCEPTION_PRECISIONS)
    for k in ("decoder_steps", "base_steps"):
        _check(getattr(cfg.sample, k) > 0, f"sample.{k}", getattr(cfg.sample, k), "must be > 0")
    for k in ("num_images", "fid_num_samples", "grid_size", "batch_size"):
        _check(getattr(cfg.eval, k) > 0, f"eval.{k}", getattr(cfg.eval, k), "must be > 0")
    _choice("eval.device", cfg.eval.device, DEVICES)
    _check(cfg.cache.batch_size > 0, "cache.batch_size", cfg.cache.batch_size, "must be > 0")
    _choice("cache.device", cfg.cache.device, DEVICES)
    return cfg


def _check_net(name: str, u) -> None:
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


# ---- hostile parameter files (issue 9, class 4): params are data, not code, and sizes are bounded ----

MAX_PARAMS_BYTES = 1 << 20
LIMITS = {  # upper bounds, named with the key: beyond them a run cannot be meant
    "data.resolution": 4096,
    "data.moving_mnist.train_clips": 10_000_000,
    "data.moving_mnist.test_clips": 10_000_000,
    "pixels.threads": 256,
    "pixels.batch_size": 65536,
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


def _bounds(cfg) -> None:
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


def _finite(obj, prefix: str = "") -> None:
    """Every float of the schema, in lists too, is finite: a YAML `.inf` or `.nan` is a number
    to the types, and no range check of ours means it."""
    for f in dataclasses.fields(obj):
        key, value = f"{prefix}{f.name}", getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _finite(value, key + ".")
        for v in value if isinstance(value, list) else [value]:
            _check(not isinstance(v, float) or math.isfinite(v), key, value, "must be a finite number")


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
