"""Networks, all sized by config: the encoder, and one UNet/UViT denoiser family used for the
latent prior, the pixel decoder and the stage-2 base model.

Every network works on images (N×C×H×W, `frames` = 0) and on video (N×C×T×H×W, `frames` = T):
for video each k×k conv becomes a factorised space-time one (k×k over each frame, then k over
time: about 1.3× a 2-D conv's cost where a full k×k×k conv costs k×). The UNets keep the number
of frames at every level; only the encoder down-samples time (`encoder.time_downsample`).

Denoisers predict v (v = α·ε − σ·y) and `VDenoiser` turns that into the x-prediction ŷ = α·y_t − σ·v
that the losses use: v-prediction keeps the network's target at unit scale at every λ.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ul.common.config import EncoderConfig, UNetConfig
from ul.core.schedules import alpha_sigma


def _groups(ch: int) -> int:
    return math.gcd(ch, 32) if ch >= 8 else 1


class PerFrame(nn.Module):
    """A 2-D layer applied to every frame of N×C×T×H×W clips."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        n, t = x.shape[0], x.shape[2]
        y = self.layer(x.transpose(1, 2).flatten(0, 1))
        return y.view(n, t, *y.shape[1:]).transpose(1, 2)


class SpaceTimeConv(nn.Module):
    """The factorised space-time convolution: k×k over every frame, then k over time at every pixel.
    Written as Conv2d + Conv1d on reshaped tensors: PyTorch's CPU Conv3d has no fast kernel for
    these shapes (a video-ci step took minutes with it)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, time_stride: int = 1):
        super().__init__()
        self.space = PerFrame(nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2))
        self.time = nn.Conv1d(c_out, c_out, k, stride=time_stride, padding=k // 2)

    def forward(self, x):
        y = self.space(x)
        n, c, t, h, w = y.shape
        z = self.time(y.permute(0, 3, 4, 1, 2).reshape(n * h * w, c, t))
        return z.view(n, h, w, c, -1).permute(0, 3, 4, 1, 2)


def conv(dims: int, c_in: int, c_out: int, k: int = 3, stride: int = 1, time_stride: int = 1) -> nn.Module:
    """A k×k convolution ('same' padding, `stride` in space) for dims = 2; for dims = 3 (video) the
    factorised k×k-then-k space-time one, `time_stride` in time (a 1×1 one per frame)."""
    if dims == 2:
        return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)
    if k == 1 and time_stride == 1:
        return PerFrame(nn.Conv2d(c_in, c_out, 1, stride=stride))
    return SpaceTimeConv(c_in, c_out, k, stride, time_stride)


def zero_init(m: nn.Module) -> nn.Module:
    """Zero the last convolution of `m`, so that a residual branch or an output starts at 0."""
    last = [c for c in m.modules() if isinstance(c, nn.Conv1d | nn.Conv2d)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return m


def upsample2(h: torch.Tensor) -> torch.Tensor:
    """Nearest ×2 in space (not in time)."""
    return F.interpolate(h, scale_factor=(1.0, 2.0, 2.0) if h.dim() == 5 else 2.0, mode="nearest")


def per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-example (B,) or per-channel (B, C) tensor shaped to broadcast against `like`."""
    return v.view(*v.shape, *([1] * (like.dim() - v.dim())))


class LogSNREmbedding(nn.Module):
    """Fourier features of λ (not of t: the networks never need to know the schedule), then an MLP."""

    def __init__(self, dim: int, num_freqs: int = 32):
        super().__init__()
        self.register_buffer(
            "freqs", torch.exp(torch.linspace(math.log(0.05), math.log(20.0), num_freqs)), persistent=False
        )
        self.mlp = nn.Sequential(nn.Linear(2 * num_freqs, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, logsnr: torch.Tensor) -> torch.Tensor:
        angle = (logsnr.float() / 4.0)[:, None] * self.freqs[None]
        return self.mlp(torch.cat([angle.sin(), angle.cos()], dim=1))


class ResBlock(nn.Module):
    """GroupNorm–SiLU–conv twice, with a FiLM scale/shift from the λ embedding (if any)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int = 0, dropout: float = 0.0, dims: int = 2):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), conv(dims, c_in, c_out)
        self.film = nn.Linear(emb_dim, 2 * c_out) if emb_dim else None
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), zero_init(conv(dims, c_out, c_out))
        self.dropout = nn.Dropout(dropout)  # conv2 starts at 0: each block starts as the identity
        self.skip = conv(dims, c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = per_example(self.film(emb), h).chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class TransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention and MLP over the tokens of the lowest-resolution feature map."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.norm1, self.qkv, self.proj = nn.LayerNorm(width), nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * width, width)
        )
        self.dropout = dropout

    def forward(self, x):
        b, n, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, w))
        return x + self.mlp(self.norm2(x))


class UNet(nn.Module):
    """A UNet (conv stages, /2 between them), optionally a UViT: `transformer_blocks` run on the
    tokens of one more /2 down-sampling below the last conv stage (for video: of every frame).

    Conditioning (the decoder's z0): `cond` is up-sampled (nearest) to the input resolution and
    concatenated with y_t, and projected (1×1 conv) and added again to the features of the stage
    whose resolution equals the condition's. The noisy z0 is all the decoder ever sees of the latent.
    For video (`frames` > 0) the condition is also up-sampled in time (its T may be smaller).
    """

    def __init__(
        self, c_in: int, resolution: int, cfg: UNetConfig, c_cond: int = 0, cond_resolution: int = 0, frames: int = 0
    ):
        super().__init__()
        chs, emb_dim = cfg.channels, 4 * cfg.channels[0]
        dims = 3 if frames else 2
        self.embed = LogSNREmbedding(emb_dim)
        self.stem = conv(dims, c_in + c_cond, chs[0])
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        self.cond_level = None
        skips, c = [], chs[0]
        res = resolution
        for i, ch in enumerate(chs):
            level = nn.ModuleList()
            for _ in range(cfg.blocks):
                level.append(ResBlock(c, ch, emb_dim, cfg.dropout, dims))
                c = ch
                skips.append(c)
            self.down.append(level)
            if c_cond and res == cond_resolution:
                self.cond_level, self.cond_proj = i, conv(dims, c_cond, ch, 1)
            if i < len(chs) - 1:
                self.downsample.append(conv(dims, c, c, stride=2))
                res //= 2
        self.mid = ResBlock(c, c, emb_dim, cfg.dropout, dims)
        self.transformer = None
        if cfg.transformer_blocks:
            width, tokens = cfg.transformer_width or c, max(frames, 1) * (res // 2) ** 2
            wrap = PerFrame if frames else (lambda layer: layer)
            self.to_tokens = wrap(nn.Conv2d(c, width, 2, stride=2))
            self.pos = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
            self.emb_to_tokens = nn.Linear(emb_dim, width)
            self.transformer = nn.Sequential(
                *[TransformerBlock(width, cfg.heads, cfg.dropout) for _ in range(cfg.transformer_blocks)]
            )
            self.from_tokens = wrap(nn.ConvTranspose2d(width, c, 2, stride=2))
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, ch in reversed(list(enumerate(chs))):
            level = nn.ModuleList()
            for _ in range(cfg.blocks):
                level.append(ResBlock(c + skips.pop(), ch, emb_dim, cfg.dropout, dims))
                c = ch
            self.up.append(level)
            if i > 0:  # up-sample, then a conv that already narrows to the next stage's width
                self.upsample.append(conv(dims, c, chs[i - 1]))
                c = chs[i - 1]
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), zero_init(conv(dims, c, c_in)))

    def forward(self, y_t, logsnr, cond=None):
        emb = self.embed(logsnr)
        if cond is not None:
            y_t = torch.cat([y_t, F.interpolate(cond, size=y_t.shape[2:], mode="nearest")], dim=1)
        h, hs = self.stem(y_t), []
        for i, level in enumerate(self.down):
            for block in level:
                h = block(h, emb)
                hs.append(h)
            if i == self.cond_level:
                h = h + self.cond_proj(F.interpolate(cond, size=h.shape[2:], mode="nearest"))
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        if self.transformer is not None:
            t = self.to_tokens(h)
            grid = t.shape
            t = t.flatten(2).transpose(1, 2) + self.pos + self.emb_to_tokens(emb)[:, None]
            t = self.transformer(t).transpose(1, 2).reshape(grid)
            h = h + self.from_tokens(t)
        for j, level in enumerate(self.up):
            for block in level:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if j < len(self.upsample):
                h = self.upsample[j](upsample2(h))
        return self.out(h)


class VDenoiser(nn.Module):
    """x̂(y_t, λ[, cond]) = α·y_t − σ·v̂ from a v-predicting network."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, y_t, logsnr, cond=None):
        alpha, sigma = alpha_sigma(per_example(logsnr, y_t))
        v = self.net(y_t, logsnr) if cond is None else self.net(y_t, logsnr, cond)
        return alpha * y_t - sigma * v.float()  # losses stay in float32 under bf16 autocast


def _res_stages(chs: list[int], blocks: int, between, dims: int = 2) -> list[nn.Module]:
    """`blocks` residual blocks per stage of `chs` channels (starting from chs[0]), with the layers
    `between(c, i)` (a resampling) after every stage i but the last."""
    layers: list[nn.Module] = []
    c = chs[0]
    for i, ch in enumerate(chs):
        for _ in range(blocks):
            layers.append(ResBlock(c, ch, dims=dims))
            c = ch
        if i < len(chs) - 1:
            layers += between(c, i)
    return layers


class Encoder(nn.Module):
    """Deterministic ResNet encoder: z_clean = E(x). Space-to-depth patching (paper: 2×2), then conv
    stages with /2 between them (for video, the first `time_downsample` of them also /2 in time).
    No predicted variance: the only noise is the fixed one at λ(0)."""

    def __init__(self, c_img: int, cfg: EncoderConfig, frames: int = 0):
        super().__init__()
        self.patch = cfg.patch
        chs, dims = cfg.channels, 3 if frames else 2

        def down(c: int, i: int) -> list[nn.Module]:
            return [conv(dims, c, c, stride=2, time_stride=2 if i < cfg.time_downsample else 1)]

        layers = [conv(dims, c_img * cfg.patch**2, chs[0])]
        layers += _res_stages(chs, cfg.blocks, down, dims)
        c = chs[-1]
        layers += [nn.GroupNorm(_groups(c), c), nn.SiLU(), conv(dims, c, cfg.latent_channels)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)


class ConvDecoder(nn.Module):
    """The encoder's mirror, x̂ = D(z) in one pass: a deterministic decoder (the KL-VAE baseline's).
    Nearest ×2 up-sampling + conv between stages, then depth-to-space un-patching."""

    def __init__(self, c_img: int, cfg: EncoderConfig, frames: int = 0):
        super().__init__()
        self.patch = cfg.patch
        chs, dims = list(reversed(cfg.channels)), 3 if frames else 2
        steps = len(chs) - 1

        def up(c: int, i: int) -> list[nn.Module]:  # the encoder's time down-sampling, undone last
            scale = 2.0 if dims == 2 else (2.0 if steps - 1 - i < cfg.time_downsample else 1.0, 2.0, 2.0)
            return [nn.Upsample(scale_factor=scale, mode="nearest"), conv(dims, c, c)]

        layers = [conv(dims, cfg.latent_channels, chs[0])]
        layers += _res_stages(chs, cfg.blocks, up, dims)
        c = chs[-1]
        layers += [nn.GroupNorm(_groups(c), c), nn.SiLU(), conv(dims, c, c_img * cfg.patch**2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        x = self.net(z)
        return F.pixel_shuffle(x, self.patch) if self.patch > 1 else x


def image_shape(cfg) -> tuple[int, ...]:
    """(C, H, W) of the images of a full Config; (C, T, H, W) of its clips for video."""
    d = cfg.data
    return (d.channels, *((d.frames,) if d.frames else ()), d.resolution, d.resolution)


def latent_shape(cfg) -> tuple[int, ...]:
    """(C, h, w) of z for a full Config; (C, t, h, w) for video."""
    down = cfg.encoder.patch * 2 ** (len(cfg.encoder.channels) - 1)
    r = cfg.data.resolution // down
    t = (cfg.data.frames // 2**cfg.encoder.time_downsample,) if cfg.data.frames else ()
    return (cfg.encoder.latent_channels, *t, r, r)


def latent_frames(z_shape: tuple[int, ...]) -> int:
    """t of a (C, t, h, w) video latent; 0 for an image latent (C, h, w)."""
    return z_shape[1] if len(z_shape) == 4 else 0
