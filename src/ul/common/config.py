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

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ul.common import bounded
from ul.common.config_checks import refuse_interpolations, validate
from ul.common.errors import ConfigError

MAX_PARAMS_BYTES = bounded.MAX_BYTES


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
class PixelsConfig:
    device: str = "auto"  # auto | cpu | cuda (DALI decodes with device="mixed" on cuda)
    on_error: str = "fail"  # fail | skip
    drop: list = field(default_factory=list)  # on request: "duplicates" and/or "blank" (ul.data.pixels.images.DROPS)
    threads: int = 2
    batch_size: int = 256


@dataclass
class NoiseConfig:
    logsnr: float = 5.0  # λ(0): the fixed log-SNR of the encoder noise
    logsnr_min: float = -15.0  # λ_min: the prior's (and base model's) end of diffusion


@dataclass
class UnifiedConfig:
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
class LaunchConfig:
    """How a training stage runs: one process (the default), or torchrun's processes on this and
    other machines (ul.common.launch); what it computes is the same for any shape."""

    nnodes: int = 1  # machines, each running the stage with the same params and data
    nproc_per_node: int = 1  # processes per machine (one per GPU, or a few on CPU cores)
    rdzv_endpoint: str = ""  # host:port of the c10d rendezvous on one of the machines; "" = this machine only
    max_restarts: int = 0  # times torchrun's elastic agent restarts the group after a failure
    timeout_s: float = 300.0  # how long a rendezvous or a collective waits for a missing machine


@dataclass
class TrainConfig:
    """One training stage; the defaults are stage 1's (stage 2 overrides a few in `Config`)."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    lr_decay: str = "none"  # none | cosine: after the warm-up, lr constant, or cosine to 0 at the last step
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.998
    log_every: int = 25
    ckpt_every: int = 100
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads, 0 = all cores
    precision: str = "auto"  # auto | fp32 | bf16: autocast dtype (auto = bf16 where the CPU/GPU has it natively)
    compile: str = "auto"  # auto | eager | inductor: torch.compile of the step (auto = inductor on CUDA only)
    launch: LaunchConfig = field(default_factory=LaunchConfig)


@dataclass
class SampleConfig:
    sampler: str = "dpm2m"  # one of SAMPLERS; dpm2m: second order, < 1% variance error at 50 steps
    decoder_steps: int = 50
    base_steps: int = 50
    compile: str = "auto"  # auto | eager | inductor: torch.compile of the samplers' network (auto = on CUDA only)


@dataclass
class CacheConfig:
    """The latent caching stage: encode every training image once with the frozen encoder."""

    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 256
    launch: LaunchConfig = field(default_factory=LaunchConfig)


@dataclass
class EvalConfig:
    num_images: int = 500  # held-out images for PSNR, rate and rFID
    fid_num_samples: int = 500  # generated samples for gFID
    fid_frames_per_clip: int = 0  # video: evenly spaced frames of each clip in the frame-level FID (0 = all)
    grid_size: int = 8  # the grids are grid_size × grid_size
    batch_size: int = 250
    device: str = "auto"  # auto | cpu | cuda
    inception_precision: str = "fp32"  # fp32 | bf16: FID's Inception (bf16: faster where native, FIDs move ~1%)
    launch: LaunchConfig = field(default_factory=LaunchConfig)


@dataclass
class Config:
    preset: str = "cpu"
    latent: str = "unified"  # unified | klvae: which stage-1 autoencoder makes the latents
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    pixels: PixelsConfig = field(default_factory=PixelsConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    unified: UnifiedConfig = field(default_factory=UnifiedConfig)
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


def read_yaml(path: Path) -> DictConfig:
    """A parameter file as a mapping: one ConfigError (naming the file) for a folder, a pipe, a
    file that is empty, too large, not YAML (or YAML with aliases, non-string or repeated keys,
    deep nesting: ul.common.bounded), not a mapping."""
    try:
        data = bounded.read_yaml(path, MAX_PARAMS_BYTES, "parameter file")
    except bounded.ParseError as err:
        raise ConfigError(str(err)) from None
    if data is None:
        raise ConfigError(f"{path}: is empty (or only comments); refusing to run on built-in defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: holds a {type(data).__name__}, not a mapping of parameters")
    refuse_interpolations(data)
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None
