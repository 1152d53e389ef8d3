"""`dvc exp run -S preset=video-ci`: every stage on video, from real MNIST digits to FVD."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    assert _json(p / "data/pixels/train/index.json")["shape"] == [1, 16, 32, 32]  # C, T, H, W
    assert _json(p / "data/latents/train/index.json")["shape"] == [4, 4, 8, 8]  # T/4, H/4, W/4
    assert _json(p / "metrics/validate.json")["success"] is True
    card = (p / "models/stage1/README.md").read_text(encoding="utf-8")
    assert "video clips: 1×16×32×32 (C×T×H×W)" in card


def test_video_metrics_fvd_per_frame_rate_and_animated_grids(video_project):
    m = _json(video_project / "eval/metrics.json")
    for key in ("rfvd", "gfvd", "rfid", "gfid", "psnr_db", "latent_bits_per_frame", "latent_bits_per_pixel"):
        assert math.isfinite(m[key]), key
    assert m["fvd_num_clips"] == 8 and m["fvd_frames"] == 16 and m["fid_frames_per_clip"] == 4
    assert m["latent_bits_per_frame"] == pytest.approx(m["latent_bits_per_image"] / 16)
    assert m["latent_bits_per_pixel"] == pytest.approx(m["latent_bits_per_image"] / (16 * 32 * 32))
    assert m["gfvd"] > 0 and m["rfvd"] > 0
    assert "per-frame" in m["psnr_reduction"]
    for name in ("samples.png", "reconstructions.png"):
        with Image.open(video_project / "eval" / name) as im:
            assert im.n_frames == 16, name
    shown = sh(["dvc", "metrics", "show", "--json"], video_project).stdout
    assert "gfvd" in shown


def test_the_video_study_runs_and_reports_fvd_with_animated_grids(video_project):
    """`ul results run --study video` at video-ci: both loss factors as DVC experiments, then the
    report's video table and the animated grids taken from DVC's cache."""
    sh(["ul", "results", "run", "--study", "video", "--preset", "video-ci"], video_project)
    sh(["ul", "results", "report", "--out", "report"], video_project)
    text = (video_project / "report/studies.md").read_text(encoding="utf-8")
    section = text[text.index("## Video") :]
    rows = [line for line in section.splitlines() if line.startswith("| 1.5 |") or line.startswith("| 2.1 |")]
    assert len(rows) == 2, section
    got = _json(video_project / "report/results.json")
    for name in ("video-lf1.5", "video-lf2.1"):
        assert math.isfinite(got[name]["metrics"]["gfvd"]), name
        with Image.open(video_project / f"report/{name}-samples.png") as im:
            assert im.n_frames == 16
    assert got["video-lf1.5"]["params"]["unified.loss_factor"] == 1.5


def test_the_ul_command_reads_and_writes_clips(video_project, tmp_path):
    """`ul rate` / `ul reconstruct` on a video model read video files (here a real MP4 and
    held-out Moving MNIST clips) and write each reconstruction as an animated PNG."""
    import shutil

    from datahelpers import TRAFFIC, raw_files

    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(TRAFFIC, clips / "traffic.mp4")
    held_out = raw_files(video_project / "data/raw")
    for name in ("00000.png", "00001.png"):
        (clips / name).write_bytes(held_out[f"test/{name}"])
    r = sh(["ul", "rate", "--json", "--draws", "1", str(clips)], video_project)
    rows = json.loads(r.stdout)["images"]
    assert [Path(x["file"]).name for x in rows] == ["00000.png", "00001.png", "traffic.mp4"]
    assert all(x["bits_per_image"] > 0 for x in rows)
    sh(["ul", "reconstruct", "--steps", "2", "-o", str(tmp_path / "rec"), str(clips)], video_project)
    for name in ("00000.png", "traffic.png"):
        with Image.open(tmp_path / "rec" / name) as im:
            assert im.n_frames == 16 and im.size == (32, 32), name
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.mp4").write_bytes((clips / "traffic.mp4").read_bytes()[:5000])
    r = sh(["ul", "rate", str(bad)], video_project, check=False)
    last = r.stderr.strip().splitlines()[-1]  # after the progress bar: one error line naming the file
    assert r.returncode == 1 and last.startswith("error: ") and "cut.mp4: not a readable video" in last
