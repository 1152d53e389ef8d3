"""A folder of ordinary colour images trains out of the box: Google's emoji (RGBA PNGs at 64×64,
19 exact duplicates; tools/emoji) through `file://`, at the `ci` preset's shapes. Each run's first
error names the one override it needs, and with the colour preset's data settings every stage runs."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image
from project import CHEAP, ROOT, copy_project, ran_stages, sh

EMOJI = ROOT / "tools/emoji/node_modules/emoji-datasource-google/img/google/64"
pytestmark = pytest.mark.skipif(not EMOJI.is_dir(), reason="tools/emoji not installed (make setup needs npm)")


def _exp(proj, *sets, check=True):
    every = ("data.max_train=0", "data.max_test=0")  # all 3,786 files (the ci preset keeps 1,280)
    args = [
        a for s in ("preset=ci", f"data.source=file://{EMOJI}", "data.channels=3", *every, *sets) for a in ("-S", s)
    ]
    return sh(["dvc", "exp", "run", *args, *[a for s in CHEAP for a in ("-S", s)]], proj, check=check)


def test_a_colour_folder_trains_and_each_first_error_names_its_override(tmp_path):
    proj = copy_project(tmp_path / "proj")
    r = _exp(proj, check=False)  # defaults: refuse transparency, pad
    err = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("error: ")]
    assert r.returncode and err and "data.background=white or black" in err[0], r.stderr[-2000:]
    r = _exp(proj, "data.background=white", check=False)  # now validate: duplicates and sizes
    out = r.stdout + r.stderr
    assert r.returncode and "fix: exact duplicate files: set pixels.drop=[duplicates]" in out, out[-3000:]
    assert "fix: images larger than data.resolution: set data.resize_mode=resize" in out

    r = _exp(proj, "data.background=white", "data.resize_mode=resize", "pixels.drop=[duplicates,blank]")
    assert {"pixels", "validate", "train_stage1", "evaluate"} <= ran_stages(r.stdout + r.stderr)
    decoded = json.loads((proj / "metrics/pixels.json").read_text())
    assert decoded["dropped"]["duplicates"] >= 1 and decoded["backend"] == "pillow"  # flattening: Pillow
    listed = json.loads((proj / "data/pixels/skipped.json").read_text())
    assert all(e.get("drop") in ("duplicates", "blank") for e in listed) and len(listed) == sum(
        decoded["dropped"].values()
    )
    metrics = json.loads((proj / "eval/metrics.json").read_text())
    assert math.isfinite(metrics["psnr_db"]) and metrics["psnr_db"] > 5 and metrics["latent_bits_per_image"] > 0
    with Image.open(proj / "eval/samples.png") as im:
        assert im.mode == "RGB"
