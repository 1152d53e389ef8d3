"""`dvc exp run -S preset=video-ci`: every stage on video, from real MNIST digits to FVD."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image
from project import ALL, copy_project, ran_stages, sh


@pytest.fixture(scope="module")
def video_project(tmp_path_factory):
    proj = copy_project(tmp_path_factory.mktemp("video"))
    r = sh(["dvc", "exp", "run", "-S", "preset=video-ci"], proj)
    assert ran_stages(r.stdout + r.stderr) == ALL, r.stdout[-3000:]
    return proj


def _json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_clips_flow_through_every_stage_with_their_shapes(video_project):
    p = video_project
    assert _json(p / "data/decoded/train/index.json")["shape"] == [1, 16, 32, 32]  # C, T, H, W
    assert _json(p / "data/latents/train/index.json")["shape"] == [4, 4, 8, 8]  # T/4, H/4, W/4
    assert _json(p / "metrics/validate.json")["success"] is True
    card = (p / "models/stage1/README.md").read_text(encoding="utf-8")
    assert "16" in card


def test_video_metrics_fvd_per_frame_rate_and_animated_grids(video_project):
    m = _json(video_project / "eval/metrics.json")
    for key in ("rfvd", "gfvd", "rfid", "gfid", "psnr_db", "latent_bits_per_frame", "latent_bits_per_pixel"):
        assert math.isfinite(m[key]), key
    assert m["fvd_num_clips"] == 8 and m["fvd_frames"] == 16
    assert m["latent_bits_per_frame"] == pytest.approx(m["latent_bits_per_image"] / 16)
    assert m["latent_bits_per_pixel"] == pytest.approx(m["latent_bits_per_image"] / (16 * 32 * 32))
    assert m["gfvd"] > 0 and m["rfvd"] > 0
    assert "per-frame" in m["psnr_reduction"]
    for name in ("samples.png", "reconstructions.png"):
        with Image.open(video_project / "eval" / name) as im:
            assert im.n_frames == 16, name
    shown = sh(["dvc", "metrics", "show", "--json"], video_project).stdout
    assert "gfvd" in shown
