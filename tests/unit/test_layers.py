"""The library's layers, and their one import direction (README, "Layout"):

    app        ul/__init__, api, cli, commands, inputs, release, stages/, results/
    artifacts  export, model card, bundle, latent cache          → core, storage, common
    train      loop, checkpoint, distributed, precision, flops   → core, common
    eval       psnr, Inception, FID/KID, I3D/FVD, evaluate       → core, common
    core       the paper: schedules ... models                   → common
    data       fetch/ decode/ validate/ (+ layout, manifest)     → storage, common
    storage    lakeFS and S3 clients                             → common
    common     config, compose, atomic writes, errors, shards    → nothing of ul

Every import counts, the lazy ones inside functions too (tests/imports.py), so a lazy import can
no longer hide an upward one, and the module graph has no cycle at all."""

from __future__ import annotations

from imports import SRC, imported_names, module_file

# layer -> the layers it may import (itself included); a module's layer is its first package under ul
ALLOWED = {
    "common": {"common"},
    "storage": {"storage", "common"},
    "core": {"core", "common"},
    "data": {"data", "storage", "common"},
    "train": {"train", "core", "common"},
    "eval": {"eval", "core", "common"},
    "artifacts": {"artifacts", "core", "storage", "common"},
}
# inside data: the shared leaves, then the three stages' packages; validate may read what pixels reads
DATA_ALLOWED = {
    "layout": set(),
    "manifest": {"layout"},
    "rawshards": {"layout", "manifest"},
    "fetch": {"fetch", "layout", "manifest", "rawshards"},
    "pixels": {"pixels", "layout", "manifest", "rawshards"},
    "validate": {"validate", "pixels", "layout", "manifest", "rawshards"},
}


def modules() -> dict[str, set[str]]:
    """Every module of ul -> the ul modules (files) it imports, lazy imports included."""
    graph = {}
    for path in sorted((SRC / "ul").rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        eager, lazy = imported_names(name, path)
        targets = set()
        for target in eager | lazy:
            parts = target.split(".")
            while parts and module_file(".".join(parts)) is None:  # `from ul.x import function`
                parts.pop()
            if parts and parts[0] == "ul" and ".".join(parts) != name:
                targets.add(".".join(parts))
        graph[name] = targets
    return graph


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in ALLOWED else "app"


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import that breaks the layering, as `importer -> imported`."""
    bad = []
    for name, targets in graph.items():
        for target in targets:
            if target == "ul":  # the package's lazy __getattr__ (ul.Autoencoder) is the app's
                target = "ul.api"
            lo, hi = layer(name), layer(target)
            if lo != "app" and (hi == "app" or hi not in ALLOWED[lo]):
                bad.append(f"{name} -> {target}")
            elif lo == hi == "data" and len(name.split(".")) > 2:
                a, b = name.split(".")[2], target.split(".")[2] if len(target.split(".")) > 2 else None
                if b is not None and b not in DATA_ALLOWED[a]:
                    bad.append(f"{name} -> {target}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of the module graph (one per strongly connected component of two or more)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):  # Tarjan, iterative enough for a graph of ~100 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer_and_no_import_goes_up():
    graph = modules()
    assert {layer(n) for n in graph} == set(ALLOWED) | {"app"}
    assert upward(graph) == []


def test_the_module_graph_has_no_cycle():
    assert cycles(modules()) == []


def test_the_check_sees_an_upward_import_a_cycle_and_a_data_stage_reaching_into_another():
    """The rule is not vacuous: the real graph plus one bad edge of each kind fails."""
    graph = modules()
    for importer, imported in [
        ("ul.core.model", "ul.train.loop"),  # core → train
        ("ul.common.config", "ul.data.layout"),  # common → data
        ("ul.eval.evaluate", "ul.artifacts.export"),  # eval → artifacts
        ("ul.data.fetch.sources", "ul.core.model"),  # data → core
        ("ul.storage.lakefs", "ul.release"),  # storage → app
        ("ul.data.pixels.images", "ul.data.validate.gate"),  # decode → validate
        ("ul.data.layout", "ul.data.manifest"),  # the leaf imports nothing of data
    ]:
        bad = {k: set(v) for k, v in graph.items()}
        bad[importer].add(imported)
        assert upward(bad) == [f"{importer} -> {imported}"]
    bad = {k: set(v) for k, v in graph.items()}
    bad["ul.core.schedules"].add("ul.core.model")  # model imports schedules: now both ways
    (cycle,) = cycles(bad)
    assert {"ul.core.model", "ul.core.schedules"} <= set(cycle)
