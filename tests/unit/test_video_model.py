"""Space-time Unified Latents: the same models, losses and samplers on clips N×C×T×H×W."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import preset_config
from PIL import Image

from ul.common.config import ConfigError
from ul.common.images import frames_of, save_grid, save_pairs_grid
from ul.core.model import BaseModel, UnifiedLatents, check_pair, stage1_model
from ul.core.schedules import bits


@pytest.fixture(scope="module")
def cfg():
    return preset_config("video-ci")


def test_latents_are_space_time_and_down_sampled_in_time(cfg):
    m = UnifiedLatents(cfg)
    assert m.x_shape == (1, 16, 32, 32)
    assert m.z_shape == (4, 4, 8, 8)  # T/4 (time_downsample=2), H/4, W/4 (two /2 steps)
    z = m.encode(torch.zeros(2, *m.x_shape))
    assert tuple(z.shape) == (2, *m.z_shape)


def test_stage1_and_stage2_train_and_sample_on_clips(cfg):
    torch.manual_seed(0)
    m, base = UnifiedLatents(cfg), BaseModel(cfg)
    check_pair(m, base)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, *m.x_shape) * 2 - 1
    terms = m(x, m.draw_noise(2, gen))
    assert all(torch.isfinite(v).all() for v in terms.values())
    terms["loss"].mean().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in m.encoder.parameters() for g in [g.grad])
    z0 = base.sample_latents(2, 2, generator=gen)
    assert tuple(z0.shape) == (2, *m.z_shape)
    clip = m.decode(z0, 2, generator=gen)
    assert tuple(clip.shape) == (2, *m.x_shape) and clip.abs().max() <= 1


def test_the_decoder_condition_reaches_every_frame(cfg):
    """z0 of the last latent frame changes the decoder's output on the clip frames it covers."""
    torch.manual_seed(0)
    m = UnifiedLatents(cfg)
    for p in m.decoder.parameters():  # the zero-initialised output layers would hide everything
        torch.nn.init.normal_(p, std=0.05)
    y = torch.zeros(1, *m.x_shape)
    z0 = torch.zeros(1, *m.z_shape)
    logsnr = torch.zeros(1)
    base_out = m.decoder(y, logsnr, z0)
    z0[:, :, -1] = 1.0  # the last latent frame = clip frames 12..15
    moved = (m.decoder(y, logsnr, z0) - base_out).abs().flatten(3).amax(-1)[0, 0]
    assert moved[12:].min() > 0


def test_klvae_baseline_on_clips(cfg):
    import dataclasses

    k = stage1_model(dataclasses.replace(cfg, latent="klvae"))
    x = torch.rand(2, *k.x_shape) * 2 - 1
    assert tuple(k.encode(x).shape) == (2, *k.z_shape)
    assert tuple(k.decode(k.encode(x)).shape) == tuple(x.shape)
    assert torch.isfinite(k(x, k.draw_noise(2, torch.Generator().manual_seed(0)))["loss"]).all()


def test_rate_per_clip_frame_and_pixel():
    r = bits(torch.tensor([16 * 1024 * math.log(2)]), latent_shape=(4, 4, 8, 8), image_shape=(1, 16, 32, 32))
    assert r["bits_per_image"] == pytest.approx(16 * 1024)
    assert r["bits_per_frame"] == pytest.approx(1024)
    assert r["bits_per_pixel"] == pytest.approx(1.0)
    assert "bits_per_frame" not in bits(1.0, image_shape=(1, 32, 32))


def test_video_config_is_checked(cfg):
    with pytest.raises(ConfigError, match="data.frames=10: must be divisible by 2\\^time_downsample = 4"):
        preset_config("video-ci", **{"data.frames": 10})
    with pytest.raises(ConfigError, match="encoder.patch=2: must be 1 for video"):
        preset_config("video-ci", **{"encoder.patch": 2})
    with pytest.raises(ConfigError, match="encoder.time_downsample=3"):
        preset_config("video-ci", **{"encoder.time_downsample": 3})


def test_clip_grids_are_animated_pngs(tmp_path):
    clips = torch.zeros(3, 1, 5, 8, 8, dtype=torch.uint8)
    for t in range(5):
        clips[:, :, t, t, :] = 255  # a bar moving down, one row per frame
    path = save_grid(clips, tmp_path / "g.png", nrow=3, pad=1)
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.is_animated
        im.seek(2)
        frame = np.asarray(im.convert("L"))
    assert frame.shape == (8 + 2, 3 * 9 + 1)
    assert (frame[1 + 2, 1:9] == 255).all() and (frame[1 + 1, 1:9] == 0).all()
    pairs = save_pairs_grid(clips, clips, tmp_path / "p.png", nrow=3)
    with Image.open(pairs) as im:
        assert im.n_frames == 5


def test_frames_of_orders_frames_clip_by_clip():
    x = torch.arange(2 * 3).view(2, 1, 3, 1, 1)
    assert frames_of(x).flatten().tolist() == [0, 1, 2, 3, 4, 5]
    assert frames_of(np.zeros((2, 1, 4, 4), np.uint8)).shape == (2, 1, 4, 4)


def test_frames_of_keeps_evenly_spaced_frames_per_clip():
    x = torch.arange(2 * 16).view(2, 1, 16, 1, 1)
    assert frames_of(x, 4).flatten().tolist() == [0, 5, 10, 15, 16, 21, 26, 31]  # first and last kept
    assert frames_of(x, 16).equal(frames_of(x)) and frames_of(x, 40).equal(frames_of(x))
