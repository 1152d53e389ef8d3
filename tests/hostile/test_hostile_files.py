"""Hostile files, third round: parameter and config files that attack through YAML and JSON
themselves (aliases, key types, nesting, non-finite numbers), crafted latent files, crafted and
altered exports, and bundles asked to carry what is not theirs. Each is refused by its header or
its parse, with one error naming the file, before memory or time is spent."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from ul import Autoencoder, cli
from ul.artifacts import export
from ul.artifacts.bundle import write_bundle
from ul.common import bounded, npz
from ul.common.config import ConfigError, load
from ul.common.errors import ExportError
from ul.params import compose_params

ROOT = Path(__file__).resolve().parents[2]

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)


@pytest.fixture(scope="module")
def ci_params():
    return compose_params(ROOT / "conf", ["preset=ci"])


def _params(tmp_path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        (BOMB, "line 1: YAML anchors and aliases are refused"),
        ("seed: 0\nbase: &b {sigmoid_bias: 0.0}\nother: *b\n", "line 2: YAML anchors and aliases are refused"),
        ("seed: 0\n1: one\n", "line 2: key 1 is a int, not a string"),
        ("seed: 0\n? [a, b]\n: list key\n", "key .* is a list, not a string"),
        ("seed: 0\nnoise: " + "[" * 200 + "]" * 200 + "\n", "nests deeper than 32 levels"),
        ("seed: 0\nnoise:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)) + "\n", "nests deeper than 32"),
    ],
)
def test_a_params_file_that_attacks_through_yaml_is_one_error_at_once(tmp_path, text, message):
    start = time.monotonic()
    with pytest.raises(ConfigError, match=message):
        load(_params(tmp_path, text))
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    "key, value",
    [("noise.logsnr", ".inf"), ("unified.sigmoid_bias", ".nan"), ("stage1.lr", "-.inf"), ("data.fps", ".nan")],
)
def test_every_float_param_is_checked_finite(tmp_path, ci_params, key, value, capsys):
    section, name = key.split(".")
    text = yaml.safe_dump(ci_params, sort_keys=False).replace(
        f"\n  {name}: {ci_params[section][name]}\n", f"\n  {name}: {value}\n", 1
    )
    assert f"{name}: {value}" in text
    with pytest.raises(ConfigError, match=rf"{key}=.*finite"):
        load(_params(tmp_path, text))
    out = tmp_path / "composed.yaml"
    assert cli.main(["params", "-o", str(out), "preset=ci", f"{key}={value.replace('.', '', 1)}"]) == 1
    assert "finite" in capsys.readouterr().err and not out.exists()


def test_a_conf_file_with_an_alias_bomb_is_refused_before_hydra_reads_it(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "preset" / "ci.yaml").write_text((conf / "preset" / "ci.yaml").read_text() + "\n" + BOMB)
    with pytest.raises(ConfigError, match=r"ci.yaml: line \d+: YAML anchors and aliases are refused"):
        compose_params(conf, ["preset=ci"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 100_000 + "]" * 100_000, "nests deeper than 32 levels"),
        ('{"a": ' * 40 + "1" + "}" * 40, "nests deeper than 32 levels"),
        ('{"x": NaN}', "NaN is not a number JSON allows"),
        ('{"x": -Infinity}', "-Infinity is not a number JSON allows"),
        ('{"x": 1, "x": 2}', "key 'x' is given twice"),
    ],
)
def test_json_is_bounded_in_depth_and_refuses_non_finite_numbers(text, message):
    with pytest.raises(bounded.ParseError, match=message):
        bounded.load_json(text, "f.json")


def test_a_pipe_a_folder_or_an_oversized_file_is_refused_without_reading_it(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(bounded.ParseError, match="not a regular file"):
        bounded.read_json(tmp_path / "pipe.json")  # would block on open
    with pytest.raises(bounded.ParseError, match="not a regular file"):
        bounded.read_json(tmp_path)
    (tmp_path / "big.json").write_bytes(b" " * (bounded.MAX_BYTES + 1))
    with pytest.raises(bounded.ParseError, match="larger than"):
        bounded.read_json(tmp_path / "big.json")


# ---- crafted exports ----


@pytest.fixture
def copy_of(tiny_export, tmp_path):
    folder = tmp_path / "stage1"
    shutil.copytree(tiny_export / "stage1", folder)
    return folder


def _edit_config(folder: Path, edit) -> None:
    meta = json.loads((folder / "config.json").read_text())
    edit(meta)
    (folder / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["config"]["noise"].update(logsnr=float("inf")), "Infinity is not a number JSON allows"),
        (lambda m: m["config"]["unified"].update(loss_factor=float("nan")), "NaN is not a number JSON allows"),
        (lambda m: m["training"].update(deep=json.loads("[" * 50 + "]" * 50)), "nests deeper than 32"),
    ],
)
def test_a_crafted_export_config_is_refused_naming_the_file(copy_of, edit, message, capsys):
    _edit_config(copy_of, edit)
    with pytest.raises(ExportError, match=message):
        Autoencoder.load(copy_of)
    assert cli.main(["info", str(copy_of)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {copy_of / 'config.json'}") and err.count("\n") == 1


def test_a_config_holding_finite_but_out_of_range_values_is_refused(copy_of):
    _edit_config(copy_of, lambda m: m["config"]["data"].update(fps=5000.0))
    with pytest.raises(ExportError, match=r"data.fps=5000.0: must be in \[0, 1000\]"):
        Autoencoder.load(copy_of)


def test_altered_or_non_finite_weights_are_refused_at_load(copy_of):
    from safetensors.torch import load_file, save_file

    state = load_file(copy_of / "model.safetensors")
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key] = state[key].clone()
    state[key].view(-1)[0] += 1e-3  # one weight nudged: same shapes, same size
    save_file(state, copy_of / "model.safetensors", metadata={"format": export.FORMAT, "class": "UnifiedLatents"})
    with pytest.raises(ExportError, match="sha256 differs from the weights_sha256 config.json records"):
        Autoencoder.load(copy_of)
    state[key].view(-1)[0] = float("nan")  # and a NaN, with the hash made to agree
    save_file(state, copy_of / "model.safetensors", metadata={"format": export.FORMAT, "class": "UnifiedLatents"})
    _edit_config(copy_of, lambda m: m.update(weights_sha256=export.identity(copy_of)))
    with pytest.raises(ExportError, match=f"tensor {key} holds NaN or infinite values"):
        Autoencoder.load(copy_of)


# ---- crafted latent files ----


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _latents(ae, n=2) -> dict:
    return {
        "z_clean": np.zeros((n, *ae.latent_shape), np.float32),
        "names": np.array([f"{i}.png" for i in range(n)]),
        "model_sha256": np.array(ae.identity),
        "logsnr0": np.array(ae.logsnr0),
    }


def _declare_shape(data: bytes, member: str, shape: tuple) -> bytes:
    """The .npz with `member`'s .npy header claiming `shape` (padded to the same length)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == member:
                old = body[10 : 10 + int.from_bytes(body[8:10], "little")]
                new = old.replace(old[old.index(b"(") : old.index(b")") + 1], repr(shape).encode())
                body = (
                    body[:10]
                    + new.ljust(len(old) - 1).rstrip(b"\n").ljust(len(old) - 1)
                    + b"\n"
                    + body[10 + len(old) :]
                )
            dst.writestr(info.filename, body)
    return out.getvalue()


def _bomb(ae) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in _latents(ae).items():
            buf = io.BytesIO()
            np.save(buf, np.zeros((20_000, *ae.latent_shape), np.float32) if k == "z_clean" else v)
            zf.writestr(f"{k}.npy", buf.getvalue())
    return out.getvalue()


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda ae: _declare_shape(_npz_bytes(**_latents(ae)), "z_clean.npy", (10**12, 4, 8, 8)),
            "its header declares",
        ),
        (lambda ae: _declare_shape(_npz_bytes(**_latents(ae)), "names.npy", (10**15,)), "its header declares"),
        (_bomb, "declares .* bytes of arrays in a file of"),
        (lambda ae: _npz_bytes(**{**_latents(ae), "names": np.array([{"a": 1}], dtype=object)}), "holds objects"),
    ],
)
def test_a_crafted_latent_file_is_refused_from_its_headers(tiny_export, tmp_path, make, message, capsys):
    ae = Autoencoder.load(tiny_export / "stage1")
    path = tmp_path / "z.npz"
    path.write_bytes(make(ae))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(npz.NpzError, match=message):
        npz.read(path, ("z_clean", "names", "model_sha256", "logsnr0"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing allocated
    assert cli.main(["decode", str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_export / "stage1")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: not a latent file") and not (tmp_path / "out").exists()


def test_an_honest_latent_file_still_reads(tiny_export, tmp_path):
    ae = Autoencoder.load(tiny_export / "stage1")
    (tmp_path / "z.npz").write_bytes(_npz_bytes(**_latents(ae, 3)))
    got = npz.read(tmp_path / "z.npz", ("z_clean", "names"))
    assert got["z_clean"].shape == (3, *ae.latent_shape) and list(got["names"]) == ["0.png", "1.png", "2.png"]


# ---- bundles carry only their own regular files ----


@pytest.fixture
def tree(tiny_export, tmp_path):
    root = tmp_path / "tree"
    (root / "models").mkdir(parents=True)
    for s in ("stage1", "stage2"):
        shutil.copytree(tiny_export / s, root / "models" / s)
    (root / "eval").mkdir()
    (root / "eval" / "metrics.json").write_text("{}")
    (root / "params.yaml").write_text("seed: 0\n")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    return root


def test_a_bundle_refuses_a_link_out_of_the_tree(tree, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the neighbour's key")
    (tree / "dvc.lock").unlink()
    (tree / "dvc.lock").symlink_to(secret)
    with pytest.raises(ExportError, match="dvc.lock: leads out of the work tree"):
        write_bundle(tree, tmp_path / "out1")
    assert not any("neighbour" in p.read_text(errors="ignore") for p in (tmp_path / "out1").rglob("*") if p.is_file())
    weights = tree / "models/stage2/model.safetensors"  # a link in a parent folder leads out too
    shutil.move(tree / "models/stage2", tmp_path / "elsewhere")
    (tree / "models/stage2").symlink_to(tmp_path / "elsewhere")
    (tree / "dvc.lock").unlink()
    (tree / "dvc.lock").write_text("schema: '2.0'\n")
    with pytest.raises(ExportError, match=f"{weights}: leads out of the work tree"):
        write_bundle(tree, tmp_path / "out2")


def test_a_bundle_refuses_a_pipe_and_follows_links_that_stay_inside(tree, tmp_path):
    (tree / "params.yaml").unlink()
    os.mkfifo(tree / "params.yaml")
    with pytest.raises(ExportError, match="params.yaml: not a regular file|parameter file"):
        write_bundle(tree, tmp_path / "out1")
    (tree / "params.yaml").unlink()
    (tree / ".cache").mkdir()
    (tree / ".cache" / "p").write_text("seed: 0\n")
    (tree / "params.yaml").symlink_to(tree / ".cache" / "p")  # as DVC's symlink cache links
    names = write_bundle(tree, tmp_path / "out2")
    assert "params.yaml" in names and (tmp_path / "out2" / "params.yaml").read_text() == "seed: 0\n"
    Autoencoder.load(tmp_path / "out2" / "stage1")  # the copied weights pass their recorded hash
