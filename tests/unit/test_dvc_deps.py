"""dvc.yaml declares what each stage runs: every file of a stage module's import closure inside
src/ul is a `deps:` entry of that stage, so that changing any of them makes `dvc status` list the
stage (and `dvc repro` re-run it), and no src/ul dep is one the stage does not import.

The closure is derived statically with `ast`, the way Python would load the module: `import ul.x`,
`from ul.x import y` (y may be a module), `from ul import x`, relative imports,
`importlib.import_module("ul.x")` with a literal name, imports inside functions (the lazy ones run
too, on some path), and the `__init__.py` of every package on the way."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from imports import SRC, chain, closure
from project import ROOT, copy_project, pending, sh

STAGE_CMD = re.compile(r"python -m (ul\.stages\.\w+)")


def covered(rel: str, deps: list[str]) -> bool:
    """A file is covered by a dep naming it or a folder above it."""
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_closure(stage: dict) -> set[str]:
    m = STAGE_CMD.fullmatch(stage["cmd"].strip())
    assert m, f"cmd {stage['cmd']!r} is not `python -m ul.stages.<name>`: extend this test for it"
    return {p.relative_to(ROOT).as_posix() for p in closure(m.group(1))}


@pytest.mark.parametrize("name", list(stages()))
def test_every_imported_file_is_a_dep(name):
    stage = stages()[name]
    missing = sorted(f for f in stage_closure(stage) if not covered(f, stage.get("deps", [])))
    assert not missing, f"stage {name} imports files that are not in its deps in dvc.yaml: {missing}"


@pytest.mark.parametrize("name", list(stages()))
def test_a_folder_dep_is_one_whose_every_file_the_stage_imports(name):
    """A folder dep re-runs the stage on any change under it: only right when it imports them all."""
    stage = stages()[name]
    files = stage_closure(stage)
    folders = [d for d in stage.get("deps", []) if d.startswith("src/") and (ROOT / d).is_dir()]
    partial = {d: sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / d).rglob("*.py")) for d in folders}
    partial = {d: [f for f in every if f not in files] for d, every in partial.items()}
    assert not {d: fs for d, fs in partial.items() if fs}, f"stage {name}: folder deps with files it never imports"


@pytest.mark.parametrize("name", list(stages()))
def test_no_src_dep_is_one_the_stage_does_not_import(name):
    stage = stages()[name]
    files = stage_closure(stage)
    unused = [d for d in stage.get("deps", []) if d.startswith("src/") and not any(covered(f, [d]) for f in files)]
    assert not unused, f"stage {name} lists deps it never imports (they re-run it for nothing): {unused}"


def test_closure_follows_every_import_form(tmp_path):
    """A synthetic package: each import form adds exactly the files Python would run."""
    files = {
        "pkg/__init__.py": "def __getattr__(name):\n    from pkg.api import Thing\n    return Thing\n",
        "pkg/api.py": "",
        "pkg/user.py": "from pkg import Thing\n",
        "pkg/entry.py": "import importlib, os\nfrom pkg.a import f\nfrom pkg import b\nfrom . import c\n"
        "def later():\n    import pkg.sub.d\n    from .sub.e import g\n"
        "    importlib.import_module('pkg.dyn')\n",
        "pkg/a.py": "def f(): pass\n",
        "pkg/b.py": "",
        "pkg/c.py": "from .b import x\n",
        "pkg/sub/__init__.py": "from ..z import y\n",
        "pkg/sub/d.py": "",
        "pkg/sub/e.py": "g = 1\n",
        "pkg/z.py": "",
        "pkg/dyn.py": "",
        "pkg/unused.py": "",
        "other/__init__.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    got = {p.relative_to(tmp_path).as_posix() for p in closure("pkg.entry", tmp_path, "pkg")}
    assert got == set(files) - {"pkg/unused.py", "other/__init__.py", "pkg/api.py", "pkg/user.py"}
    got = {p.relative_to(tmp_path).as_posix() for p in closure("pkg.user", tmp_path, "pkg")}
    assert got == {"pkg/__init__.py", "pkg/user.py", "pkg/api.py"}  # asking for pkg.Thing runs __getattr__


def test_closure_of_a_real_stage():
    got = {p.relative_to(SRC).as_posix() for p in closure("ul.stages.fetch")}
    assert {
        "ul/__init__.py",
        "ul/stages/__init__.py",
        "ul/stages/fetch.py",
        "ul/stages/_cli.py",
        "ul/common/config.py",
        "ul/data/__init__.py",
        "ul/data/fetch/sources.py",
    } <= got
    assert "ul/data/pixels/images.py" not in got and "ul/api.py" not in got  # api: only through ul.__getattr__


@pytest.mark.parametrize("name", ["fetch", "pixels", "validate"])
def test_data_stages_do_not_import_the_model(name):
    """A change to the model must not re-run (hours of) fetching and decoding: the data stages'
    closures hold no model code."""
    model = {"ul.core.model", "ul.core.networks", "ul.core.losses", "ul.core.samplers", "ul.artifacts.export"}
    via: dict = {}
    closure(f"ul.stages.{name}", via=via)
    assert not model & via.keys(), [chain(via, m) for m in sorted(model & via.keys())]


# ---- real DVC: changing a file a stage imports makes `dvc status` list exactly that stage ----------


def _placeholder_outs(proj: Path) -> None:
    """Stand-ins for every stage output, so that `dvc commit` can record a lock that matches this
    dvc.yaml without running the pipeline (tools/relock_deps.py makes them the same way)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import relock_deps

    relock_deps.placeholders(proj, stages())


def _listed(proj: Path) -> set[str]:
    return set(pending(proj))  # the always-changed source stage is listed only when its code changed


@pytest.mark.slow
def test_changing_an_imported_file_makes_dvc_status_list_exactly_its_stages(tmp_path):
    proj = copy_project(tmp_path)
    _placeholder_outs(proj)
    sh(["dvc", "commit", "-f"], proj)  # a lock of this dvc.yaml, so that nothing is listed yet
    assert _listed(proj) == set()
    importers = {
        f: {n for n, s in stages().items() if f in stage_closure(s)}
        for f in ("src/ul/common/shards.py", "src/ul/stages/_cli.py")
    }
    assert importers["src/ul/stages/_cli.py"] == set(stages()) - {"i3d_weights"}  # it reads no params
    assert "fetch" not in importers["src/ul/common/shards.py"] and "pixels" in importers["src/ul/common/shards.py"]
    for rel, expected in importers.items():
        with open(proj / rel, "a") as f:
            f.write("# changed\n")
        assert _listed(proj) == expected, rel
        sh(["dvc", "commit", "-f"], proj)
