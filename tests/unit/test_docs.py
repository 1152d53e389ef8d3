"""docs/method.md names the function behind each formula (`→ module.function`): every such name
resolves to a real object of the library, so a move or a rename cannot leave the page behind."""

from __future__ import annotations

import importlib
import pkgutil
import re

from project import ROOT

import ul

ARROW = re.compile(r"→ `([A-Za-z_][\w.]*)(?:\([^`]*\))?`")


def _modules() -> dict[str, list[str]]:
    """Last name of each module of ul -> its full names (`losses` -> [`ul.core.losses`])."""
    names: dict[str, list[str]] = {}
    for m in pkgutil.walk_packages(ul.__path__, "ul."):
        names.setdefault(m.name.rpartition(".")[2], []).append(m.name)
    return names


def resolve(ref: str, modules: dict[str, list[str]]):
    """The object `ref` names: `ul.x.y`, `module.attr` (a module of any layer) or `Class.attr`."""
    head, *rest = ref.split(".")
    if head == "ul":  # the longest importable module, then attributes
        parts = ref.split(".")
        candidates = [(".".join(parts[:i]), parts[i:]) for i in range(len(parts), 0, -1)]
    else:
        candidates = [(m, rest) for m in modules.get(head, [])]
        candidates += [(m, [head, *rest]) for ms in modules.values() for m in ms]  # Class.attr
    for module, attrs in candidates:
        try:
            obj = importlib.import_module(module)
        except ImportError:
            continue
        try:
            for a in attrs:
                obj = getattr(obj, a)
        except AttributeError:
            continue
        return obj
    return None


def test_every_function_method_md_names_exists():
    text = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    refs = sorted(set(ARROW.findall(text)))
    assert len(refs) >= 20  # the page keeps naming its code
    modules = _modules()
    assert [r for r in refs if resolve(r, modules) is None] == []


def test_a_stale_name_is_caught():
    modules = _modules()
    assert resolve("losses.prior_loss", modules) is not None
    assert resolve("metrics.psnr_db", modules) is None  # metrics.py was split into eval/psnr, ...
    assert resolve("UnifiedLatents.no_such_method", modules) is None
