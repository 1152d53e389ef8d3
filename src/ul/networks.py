"""Networks, all sized by config: the encoder, and one UNet/UViT denoiser family used for the
latent prior, the pixel decoder and the stage-2 base model.

Denoisers predict v (v = α·ε − σ·y) and `VDenoiser` turns that into the x-prediction ŷ = α·y_t − σ·v
that the losses use: v-prediction keeps the network's target at unit scale at every λ.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ul.config import EncoderConfig, UNetConfig
from ul.schedules import alpha_sigma


def _groups(ch: int) -> int:
    return math.gcd(ch, 32) if ch >= 8 else 1


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

    def __init__(self, c_in: int, c_out: int, emb_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out) if emb_dim else None
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
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
    tokens of one more /2 down-sampling below the last conv stage.

    Conditioning (the decoder's z0): `cond` is up-sampled (nearest) to the input resolution and
    concatenated with y_t, and projected (1×1 conv) and added again to the features of the stage
    whose resolution equals the condition's. The noisy z0 is all the decoder ever sees of the latent.
    """

    def __init__(self, c_in: int, resolution: int, cfg: UNetConfig, c_cond: int = 0, cond_resolution: int = 0):
        super().__init__()
        chs, emb_dim = cfg.channels, 4 * cfg.channels[0]
        self.embed = LogSNREmbedding(emb_dim)
        self.stem = nn.Conv2d(c_in + c_cond, chs[0], 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        self.cond_level = None
        skips, c = [], chs[0]
        res = resolution
        for i, ch in enumerate(chs):
            level = nn.ModuleList()
            for _ in range(cfg.blocks):
                level.append(ResBlock(c, ch, emb_dim, cfg.dropout))
                c = ch
                skips.append(c)
            self.down.append(level)
            if c_cond and res == cond_resolution:
                self.cond_level, self.cond_proj = i, nn.Conv2d(c_cond, ch, 1)
            if i < len(chs) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                res //= 2
        self.mid = ResBlock(c, c, emb_dim, cfg.dropout)
        self.transformer = None
        if cfg.transformer_blocks:
            width, tokens = cfg.transformer_width or c, (res // 2) ** 2
            self.to_tokens = nn.Conv2d(c, width, 2, stride=2)
            self.pos = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
            self.emb_to_tokens = nn.Linear(emb_dim, width)
            self.transformer = nn.Sequential(
                *[TransformerBlock(width, cfg.heads, cfg.dropout) for _ in range(cfg.transformer_blocks)]
            )
            self.from_tokens = nn.ConvTranspose2d(width, c, 2, stride=2)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, ch in reversed(list(enumerate(chs))):
            level = nn.ModuleList()
            for _ in range(cfg.blocks):
                level.append(ResBlock(c + skips.pop(), ch, emb_dim, cfg.dropout))
                c = ch
            self.up.append(level)
            if i > 0:  # up-sample, then a conv that already narrows to the next stage's width
                self.upsample.append(nn.Conv2d(c, chs[i - 1], 3, padding=1))
                c = chs[i - 1]
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, c_in, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, y_t, logsnr, cond=None):
        emb = self.embed(logsnr)
        if cond is not None:
            y_t = torch.cat([y_t, F.interpolate(cond, size=y_t.shape[-2:], mode="nearest")], dim=1)
        h, hs = self.stem(y_t), []
        for i, level in enumerate(self.down):
            for block in level:
                h = block(h, emb)
                hs.append(h)
            if i == self.cond_level:
                h = h + self.cond_proj(cond)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        if self.transformer is not None:
            t = self.to_tokens(h)
            b, w, gh, gw = t.shape
            t = t.flatten(2).transpose(1, 2) + self.pos + self.emb_to_tokens(emb)[:, None]
            t = self.transformer(t).transpose(1, 2).reshape(b, w, gh, gw)
            h = h + self.from_tokens(t)
        for j, level in enumerate(self.up):
            for block in level:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if j < len(self.upsample):
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)


class VDenoiser(nn.Module):
    """x̂(y_t, λ[, cond]) = α·y_t − σ·v̂ from a v-predicting network."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, y_t, logsnr, cond=None):
        alpha, sigma = alpha_sigma(logsnr.view(-1, 1, 1, 1))
        v = self.net(y_t, logsnr) if cond is None else self.net(y_t, logsnr, cond)
        return alpha * y_t - sigma * v.float()  # losses stay in float32 under bf16 autocast


def _res_stages(chs: list[int], blocks: int, between) -> list[nn.Module]:
    """`blocks` residual blocks per stage of `chs` channels (starting from chs[0]), with the layers
    `between(c)` (a resampling) after every stage but the last."""
    layers: list[nn.Module] = []
    c = chs[0]
    for i, ch in enumerate(chs):
        for _ in range(blocks):
            layers.append(ResBlock(c, ch))
            c = ch
        if i < len(chs) - 1:
            layers += between(c)
    return layers


class Encoder(nn.Module):
    """Deterministic ResNet encoder: z_clean = E(x). Space-to-depth patching (paper: 2×2), then conv
    stages with /2 between them. No predicted variance: the only noise is the fixed one at λ(0)."""

    def __init__(self, c_img: int, cfg: EncoderConfig):
        super().__init__()
        self.patch = cfg.patch
        chs = cfg.channels
        layers = [nn.Conv2d(c_img * cfg.patch**2, chs[0], 3, padding=1)]
        layers += _res_stages(chs, cfg.blocks, lambda c: [nn.Conv2d(c, c, 3, stride=2, padding=1)])
        c = chs[-1]
        layers += [nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, cfg.latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)


class ConvDecoder(nn.Module):
    """The encoder's mirror, x̂ = D(z) in one pass: a deterministic decoder (the KL-VAE baseline's).
    Nearest ×2 up-sampling + conv between stages, then depth-to-space un-patching."""

    def __init__(self, c_img: int, cfg: EncoderConfig):
        super().__init__()
        self.patch = cfg.patch
        chs = list(reversed(cfg.channels))
        layers = [nn.Conv2d(cfg.latent_channels, chs[0], 3, padding=1)]
        up = lambda c: [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]  # noqa: E731
        layers += _res_stages(chs, cfg.blocks, up)
        c = chs[-1]
        layers += [nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, c_img * cfg.patch**2, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        x = self.net(z)
        return F.pixel_shuffle(x, self.patch) if self.patch > 1 else x


def image_shape(cfg) -> tuple[int, int, int]:
    """(C, H, W) of the images of a full Config."""
    return cfg.data.channels, cfg.data.resolution, cfg.data.resolution


def latent_shape(cfg) -> tuple[int, int, int]:
    """(C, h, w) of z for a full Config."""
    down = cfg.encoder.patch * 2 ** (len(cfg.encoder.channels) - 1)
    r = cfg.data.resolution // down
    return cfg.encoder.latent_channels, r, r
