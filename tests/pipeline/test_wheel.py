"""The distribution on its own: the wheel, installed into a new virtual environment with only its
declared dependencies (from the local pin set), runs the model API and commands on a trained `ci`
export, has none of the pipeline's parts, and says which extra a pipeline command needs."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datahelpers import raw_files
from PIL import Image

from ul.data import manifest

ROOT = __import__("conftest").ROOT

# What the pipeline installs and the model API must not need.
PIPELINE_MODULES = ("dvc", "prefect", "great_expectations", "nvidia.dali", "hydra", "diffusers", "av")

API = """
import sys, numpy as np, torch
from PIL import Image
from ul import Autoencoder
from ul.common.images import from_uint8
from ul.inputs import load_image
ae = Autoencoder.load(sys.argv[1])
d = ae.config.data
x = from_uint8(load_image(sys.argv[2], d.resolution, d.channels, d.resize_mode)[None])
rec = ae.reconstruct(x, 4, generator=torch.Generator().manual_seed(0))
assert rec.shape == x.shape and torch.isfinite(rec).all()
print(f"psnr {10 * torch.log10(4 / (rec - x).pow(2).mean()).item():.2f}")
"""


def sh(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv holding the built wheel and its declared dependencies, pinned by requirements.lock."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    r = sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src])
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("unified_latents-*.whl")
    env = tmp / "venv"
    assert sh([sys.executable, "-m", "venv", env]).returncode == 0
    r = sh([env / "bin/python", "-m", "pip", "install", "-q", wheel, "-c", ROOT / "requirements.lock"])
    assert r.returncode == 0, r.stderr[-3000:]
    return env


@pytest.fixture(scope="module")
def image(ci_project, tmp_path_factory):
    """One held-out Fashion-MNIST image of the run, as a user's PNG."""
    raw = ci_project / "data" / "raw"
    entry = next(e for e in manifest.read(raw) if e.split == "test")
    path = tmp_path_factory.mktemp("user") / "shirt.png"
    path.write_bytes(raw_files(raw)[entry.path])
    return path


def test_the_wheel_alone_has_no_pipeline_parts(venv):
    code = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m.split('.')[0])])"
    r = sh([venv / "bin/python", "-c", code, *PIPELINE_MODULES])
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    r = sh([venv / "bin/python", "-m", "pip", "show", "unified-latents"])
    assert "Name: unified-latents" in r.stdout


def test_the_wheel_alone_runs_the_api_and_the_model_commands_on_a_ci_export(venv, ci_project, image, tmp_path):
    s1, s2, ul = ci_project / "models/stage1", ci_project / "models/stage2", venv / "bin/ul"
    r = sh([venv / "bin/python", "-c", API, s1, image])
    assert r.returncode == 0 and r.stdout.startswith("psnr "), r.stderr[-3000:]
    assert float(r.stdout.split()[1]) > 8  # a trained ci model, not noise

    r = sh([ul, "info", s1])
    assert r.returncode == 0 and "scale: multiply z0 by this" in r.stdout, r.stderr
    r = sh([ul, "rate", image, "--model", s1, "--json"])
    assert r.returncode == 0 and '"bits_per_image"' in r.stdout, r.stderr
    r = sh([ul, "encode", image, "-o", tmp_path / "z.npz", "--model", s1])
    assert r.returncode == 0, r.stderr
    r = sh([ul, "decode", tmp_path / "z.npz", "-o", tmp_path / "dec", "--model", s1, "--steps", 4])
    assert r.returncode == 0 and len(list((tmp_path / "dec").glob("*.png"))) == 1, r.stderr
    r = sh([ul, "sample", "-n", 2, "-o", tmp_path / "s.png", "--model", s1, "--stage2", s2, "--steps", 2])
    assert r.returncode == 0 and Image.open(tmp_path / "s.png").size[0] > 0, r.stderr

    # the same reconstruction as this checkout's install gives: the package is the code, not a copy of it
    outs = {}
    for name, exe in (("wheel", ul), ("checkout", Path(sys.executable).with_name("ul"))):
        r = sh([exe, "reconstruct", image, "-o", tmp_path / name, "--model", s1, "--steps", 4, "--seed", 3])
        assert r.returncode == 0, r.stderr
        outs[name] = np.asarray(Image.open(tmp_path / name / image.name), dtype=np.int16)
    assert np.abs(outs["wheel"] - outs["checkout"]).max() <= 1


def test_a_pipeline_command_names_the_extra_it_needs(venv, tmp_path):
    r = sh([venv / "bin/ul", "params", "-o", tmp_path / "p.yaml"], cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: ") and "pip install 'unified-latents[pipeline]'" in r.stderr
