"""Rewrite each stage's src/ul deps in dvc.yaml from its import closure (tests/imports.py): a folder where the stage
imports every .py file under it, else the files. Keeps every other line as it is."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import yaml  # noqa: E402
from imports import closure  # noqa: E402

SRC = ROOT / "src"
STAGE_CMD = re.compile(r"python -m (ul\.stages\.\w+)")


def collapse(files: set[str]) -> list[str]:
    """Folders (with a trailing-slash-free name) whose every .py file is in `files`, else files."""
    out = set(files)
    folders = sorted({str(Path(f).parent) for f in files}, key=lambda d: d.count("/"))
    chosen = []
    for d in folders:
        if any(d == c or d.startswith(c + "/") for c in chosen):
            continue
        every = {p.relative_to(ROOT).as_posix() for p in (ROOT / d).rglob("*.py")}
        if every and every <= files and d != "src/ul":
            chosen.append(d)
    for c in chosen:
        out = {f for f in out if not f.startswith(c + "/")}
    return sorted(out | set(chosen))


def main():
    text = (ROOT / "dvc.yaml").read_text()
    stages = yaml.safe_load(text)["stages"]
    lines = text.splitlines(keepends=True)
    out, stage, in_deps = [], None, False
    for line in lines:
        m = re.match(r"^  (\w+):\s*(#.*)?$", line)
        if m:
            stage, in_deps = m.group(1), False
        if re.match(r"^    deps:\s*$", line):
            in_deps = True
            out.append(line)
            cmd = STAGE_CMD.fullmatch(stages[stage]["cmd"].strip())
            files = {p.relative_to(ROOT).as_posix() for p in closure(cmd.group(1))}
            src = [f"      - {d}\n" for d in collapse(files)]
            continue
        if in_deps and not re.match(r"^      ", line):
            in_deps = False
            out.extend(src)
        if in_deps and re.match(r"^      - src/", line):
            continue
        out.append(line)
    (ROOT / "dvc.yaml").write_text("".join(out))


main()
