"""The front door on a trained model: the `ul` model commands and the Python API, on the models of a
real `ci` pipeline run (the shared `ci_project` fixture) and real Fashion-MNIST images from it."""

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datahelpers import raw_files
from PIL import Image

from ul import Autoencoder, LatentDiffusion, cli
from ul.artifacts import export
from ul.data import manifest
from ul.inputs import load_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(ci_project, tmp_path_factory):
    """The trained models and six held-out images of different classes, as a user has them."""
    raw = ci_project / "data" / "raw"
    files, picked, seen = raw_files(raw), [], set()
    for e in manifest.read(raw):
        if e.split == "test" and e.label not in seen:
            seen.add(e.label)
            picked.append(files[e.path])
        if len(picked) == 6:
            break
    images = tmp_path_factory.mktemp("user") / "my images"
    images.mkdir()
    for i, data in enumerate(picked):
        (images / f"item {i}.png").write_bytes(data)
    return ci_project, images


def ul(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _read(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("item*.png"))]).astype(np.float64)


def test_every_command_on_a_folder_of_real_images(run, tmp_path, capsys):
    proj, images = run
    s1, s2 = proj / "models/stage1", proj / "models/stage2"

    rc, out, err = ul(capsys, "encode", images, "-o", tmp_path / "z.npz", "--model", s1)
    assert rc == 0, err
    with np.load(tmp_path / "z.npz", allow_pickle=False) as z:
        assert z["z_clean"].shape == (6, 4, 8, 8) and z["z_clean"].dtype == np.float32
        assert list(z["names"]) == [f"item {i}.png" for i in range(6)]
        assert str(z["model_sha256"]) == export.identity(s1) and float(z["logsnr0"]) == 5.0

    rc, out, err = ul(capsys, "decode", tmp_path / "z.npz", "-o", tmp_path / "dec", "--model", s1, "--steps", 8)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == [f"item_{i}.png" for i in range(6)]
    assert (
        Image.open(tmp_path / "dec/item_0.png").size == (32, 32) and Image.open(tmp_path / "dec/item_0.png").mode == "L"
    )

    rc, out, err = ul(capsys, "reconstruct", images, "-o", tmp_path / "rec", "--model", s1, "--steps", 8)
    assert rc == 0, err
    rec = _read(tmp_path / "rec")
    orig = np.stack([load_image(images / f"item {i}.png", 32, 1, "pad")[0] for i in range(6)])  # 28² padded to 32²
    assert rec.shape == (6, 32, 32) and 0 <= rec.min() and rec.max() <= 255
    dist = ((rec[:, None] - orig[None].astype(np.float64)) ** 2).mean((2, 3))  # [reconstruction, original]
    own, other = np.diag(dist), dist[~np.eye(6, dtype=bool)].reshape(6, 5)
    # The ci model trains for seconds, so reconstructions are rough; still most must be closer to their
    # own input than to the other inputs on average (a decoder that ignores its latent fails this).
    assert (own < other.mean(1)).sum() >= 4 and own.mean() < 0.8 * other.mean(), dist
    grid = Image.open(tmp_path / "rec/grid.png")
    assert grid.size[0] > 4 * 2 * 32  # 4 pairs a row, enlarged beyond 32 px per tile

    rc, out, err = ul(capsys, "rate", images, "--json", "--model", s1, "--draws", 2)
    assert rc == 0, err
    doc = json.loads(out)
    rows = doc["images"]
    assert doc["refused"] == [] and doc["other_files_left_out"] == 0 and "32×32 (pad" in doc["transform"]
    assert [Path(r["file"]).name for r in rows] == [f"item {i}.png" for i in range(6)]
    for r in rows:
        assert 0 < r["bits_per_image"] < 1e4 and r["bits_per_pixel"] == pytest.approx(r["bits_per_image"] / 1024)
    rc, table, err = ul(capsys, "rate", images / "item 0.png", "--model", s1, "--draws", 2)
    assert rc == 0 and "bits/pixel" in table and "item 0.png" in table

    rc, out, err = ul(
        capsys,
        "sample",
        "-n",
        5,
        "-o",
        tmp_path / "grid.png",
        "--model",
        s1,
        "--stage2",
        s2,
        "--steps",
        4,
        "--base-steps",
        4,
    )
    assert rc == 0, err
    assert Image.open(tmp_path / "grid.png").size[0] > 3 * 32
    rc, out, err = ul(
        capsys,
        "sample",
        "-n",
        3,
        "-o",
        tmp_path / "samples",
        "--model",
        s1,
        "--stage2",
        s2,
        "--steps",
        4,
        "--base-steps",
        4,
    )
    assert rc == 0 and len(list((tmp_path / "samples").glob("sample-*.png"))) == 3, err


def test_bad_input_is_one_error_line_and_writes_nothing(run, tmp_path, capsys):
    proj, images = run
    s1 = proj / "models/stage1"
    broken = tmp_path / "broken.png"
    broken.write_bytes((images / "item 0.png").read_bytes()[:200])
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(deep)  # 16-bit grey
    assert ul(capsys, "encode", images, "-o", tmp_path / "z.npz", "--model", s1)[0] == 0
    z = np.load(tmp_path / "z.npz")
    np.savez(tmp_path / "other.npz", **{**z, "model_sha256": np.array("0" * 64)})
    np.savez(tmp_path / "shape.npz", **{**z, "z_clean": z["z_clean"][:, :2]})
    cases = [
        (["encode", tmp_path / "missing.png", "-o", tmp_path / "a.npz"], "missing.png", "No such file"),
        (["rate", fifo], "pipe.png", "not a regular file"),
        (["rate", deep], "deep.png", "16-bit PNG"),
        (["decode", tmp_path / "other.npz", "-o", tmp_path / "out"], "other.npz", "another model"),
        (["decode", tmp_path / "shape.npz", "-o", tmp_path / "out"], "shape.npz", "shape"),
        (["decode", broken, "-o", tmp_path / "out"], "broken.png", "not a latent file"),
        (["reconstruct", images, "-o", tmp_path / "out", "--model", tmp_path], str(tmp_path), "config.json"),
        (["reconstruct", images, "-o", images], "my images", "not an empty folder"),
    ]
    for argv, name, reason in cases:
        extra = [] if "--model" in argv else ["--model", s1]
        rc, out, err = ul(capsys, *argv, *extra)
        lines = [line for line in re.split(r"[\r\n]", err) if line.strip()]  # tqdm redraws with \r
        lines = [line for line in lines if "error" in line]
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert name in lines[0] and reason in lines[0], (argv, lines[0])
    assert not (tmp_path / "a.npz").exists() and not (tmp_path / "out").exists()
    assert sorted(p.name for p in images.iterdir()) == [f"item {i}.png" for i in range(6)]


def test_a_folder_command_finishes_the_folder_and_lists_what_it_refused(run, tmp_path, capsys):
    """One bad file does not stop `ul rate|encode|reconstruct`: every readable file is processed,
    files of other kinds are counted, each refused one is one `error:` line after the results, and
    the exit status is 1."""
    proj, images = run
    s1 = proj / "models/stage1"
    mixed = tmp_path / "mixed"
    shutil.copytree(images, mixed)
    (mixed / "broken.png").write_bytes((images / "item 0.png").read_bytes()[:200])
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(mixed / "deep.png")
    (mixed / "notes.txt").write_text("not an image")
    rc, out, err = ul(capsys, "rate", mixed, "--json", "--model", s1, "--draws", 1)
    doc = json.loads(out)
    assert rc == 1 and len(doc["images"]) == 6 and doc["other_files_left_out"] == 1
    assert {(Path(r["file"]).name, r["reason"].split(" (")[0]) for r in doc["refused"]} == {
        ("broken.png", "unreadable image"),
        ("deep.png", "unreadable image"),
    }
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all("\r" not in line for line in err.splitlines()), err  # no bar text before them
    assert "note: left out 1 file(s) of other kinds" in err
    rc, out, err = ul(capsys, "encode", mixed, "-o", tmp_path / "z.npz", "--model", s1)
    assert rc == 1 and np.load(tmp_path / "z.npz")["z_clean"].shape[0] == 6 and err.count("error: ") == 2
    assert "inputs: 1 channel(s), 32×32 (pad: centre pad or crop" in out
    rc, out, err = ul(capsys, "rate", mixed / "broken.png", "--model", s1)
    assert rc == 1 and err.strip().startswith("error: ") and "broken.png" in err and err.count("error: ") == 1


def test_the_python_api_round_trips_and_refuses_mismatched_models(run, tmp_path):
    proj, images = run
    ae = Autoencoder.load(proj / "models/stage1")
    assert ae.latent_shape == (4, 8, 8) and ae.image_shape == (1, 32, 32) and ae.logsnr0 == 5.0
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    z = ae.encode(x)
    assert torch.equal(z, ae.encode(x))  # deterministic
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(ae.noisy(z, g1), ae.noisy(z, g2))
    assert ae.decode(ae.noisy(z), steps=3).shape == x.shape
    assert ae.rate(x, draws=2).shape == (3,)
    assert torch.allclose(ae.rate(x, draws=2, unit="pixel"), ae.rate(x, draws=2) / 1024)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ae.encode(x * 255)
    with pytest.raises(ValueError, match="shape"):
        ae.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="unknown sampler"):
        ae.decode(z, steps=2, sampler="heun")
    assert LatentDiffusion.load(proj / "models/stage1", proj / "models/stage2").sample(2, 3, 3).shape == (2, 1, 32, 32)

    # a base model trained for another λ(0) is refused
    other = tmp_path / "stage2"
    shutil.copytree(proj / "models/stage2", other)
    meta = json.loads((other / "config.json").read_text())
    meta["config"]["noise"]["logsnr"] = 3.0
    (other / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="λ\\(0\\) = 3"):
        LatentDiffusion.load(proj / "models/stage1", other)


def test_an_export_loads_with_pickle_unavailable(run, tmp_path, capsys, monkeypatch):
    proj, images = run
    rc, out, err = ul(capsys, "export", tmp_path / "share", "--root", proj)
    assert rc == 0, err
    card = (tmp_path / "share/stage1/README.md").read_text()
    for want in ("Autoencoder.load", "gFID", "dvc.lock sha256", "git commit"):
        assert want in card, want

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    ae = Autoencoder.load(tmp_path / "share/stage1")
    x = torch.zeros(1, 1, 32, 32)
    assert torch.equal(ae.encode(x), Autoencoder.load(proj / "models/stage1").encode(x))
