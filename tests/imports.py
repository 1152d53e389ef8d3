"""The import graph of src/ul, derived statically with `ast` the way Python would load a module:
`import ul.x`, `from ul.x import y` (y may be a module), `from ul import x`, relative imports,
`importlib.import_module("ul.x")` with a literal name, imports inside functions (the lazy ones run
too, on some path), and the `__init__.py` of every package on the way. Shared by the tests of
dvc.yaml's deps (tests/unit/test_dvc_deps.py) and of the layers (tests/unit/test_layers.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from project import ROOT

SRC = ROOT / "src"


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The file Python runs for module `name` under `src` (a module or a package's __init__.py)."""
    base = src.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_names(name: str, path: Path) -> tuple[set[str], set[str]]:
    """The dotted names module `name` (file `path`) imports: (anywhere in its body, functions
    included; only in its module-level `__getattr__`). A PEP 562 `__getattr__` runs only when an
    attribute the module lacks is asked for (`from ul import Autoencoder`), so its imports count
    only then. For `from m import a` both `m` and `m.a` are returned: `a` may be a submodule."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lazy = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
    eager = [n for n in tree.body if n not in lazy]
    return _imports(eager, package), _imports(lazy, package)


def _imports(nodes: list[ast.AST], package: str) -> set[str]:
    names = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from . import x` in package p is `from p import x`
                parts = package.split(".")
                if node.level - 1 > len(parts):
                    continue
                module = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names


def _is_import_module(func: ast.expr) -> bool:
    """`importlib.import_module` or a bare `import_module` (from importlib import import_module)."""
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module"
    )


def closure(module: str, src: Path = SRC, top: str = "ul", via: dict | None = None) -> set[Path]:
    """The files of package `top` under `src` that importing `module` runs; `via`, if given, is
    filled with {module: the module whose import first reached it}."""
    seen: dict[str, Path] = {}
    lazy: dict[str, set[str]] = {}  # module -> what its __getattr__ imports, until something asks
    todo = [(module, None)]
    while todo:
        target, importer = todo.pop()
        parts = target.split(".")
        if parts[0] != top:
            continue
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            name = ".".join(parts[:i])
            if name in seen:
                continue
            path = module_file(name, src)
            if path is None:  # an attribute (`from ul.x import function`), maybe served by __getattr__
                parent = ".".join(parts[: i - 1])
                todo.extend((n, parent) for n in lazy.pop(parent, ()))
                break
            seen[name] = path
            if via is not None:
                via[name] = importer
            eager, lazy[name] = imported_names(name, path)
            todo.extend((n, name) for n in eager)
    return set(seen.values())


def chain(via: dict, name: str) -> str:
    """`a -> b -> name`: how the first import of `name` was reached."""
    path = [name]
    while via.get(path[-1]):
        path.append(via[path[-1]])
    return " -> ".join(reversed(path))
