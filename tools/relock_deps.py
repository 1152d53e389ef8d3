"""Re-hash the code deps of the committed dvc.lock after a move that changes no output.

    python tools/relock_deps.py           # rewrite dvc.lock's deps of files in git (src/, tools/, ...)
    python tools/relock_deps.py --check   # exit 1, naming the stages, when dvc.lock's deps are stale
    python tools/relock_deps.py --only source fetch pixels validate   # only these stages

Moving or splitting modules changes what each stage depends on, not what it writes, so the
reference run stays valid without re-training: only the deps entries of dvc.lock must follow. DVC
computes them (in a throw-away copy of the tree, where every stage output is a placeholder and
`dvc commit -f` records the lock); this script keeps the committed outs, params and the hashes of
deps that are other stages' outputs, and takes the new entries of every other dep.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tree_copy(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, files):
        src = ROOT / rel.decode()
        if src.is_file() and not src.is_symlink():
            (dest / rel.decode()).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel.decode()).write_bytes(src.read_bytes())


def placeholders(proj: Path, stages: dict) -> set[str]:
    """A stand-in for every stage output (a file where the path has a suffix, else a folder), but
    for the small, uncached files this work tree holds for real (data/source.json): their hashes
    are recorded as they are, for the stages that depend on them."""
    outs = set()
    for stage in stages.values():
        for section in ("outs", "metrics", "plots"):
            for out in stage.get(section, []):
                rel = out if isinstance(out, str) else next(iter(out))
                outs.add(rel)
                path = proj / rel
                if path.exists():
                    continue
                real = ROOT / rel
                if isinstance(out, dict) and out[rel].get("cache") is False and real.is_file():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(real.read_bytes())
                    continue
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("placeholder\n")
                else:
                    path.mkdir(parents=True)
                    (path / "placeholder").write_text("placeholder\n")
    return outs


def fresh_lock() -> tuple[dict, set[str]]:
    """The lock DVC records for this tree with placeholder outputs, and the paths that are outputs."""
    with tempfile.TemporaryDirectory(prefix="ul-relock-") as tmp:
        proj = Path(tmp)
        _tree_copy(proj)
        stages = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
        outs = placeholders(proj, stages)
        run = dict(cwd=proj, capture_output=True, text=True, check=True)
        subprocess.run(["git", "init", "-q"], **run)
        subprocess.run([sys.executable, "-m", "dvc", "commit", "-f", "-q"], **run)
        lock = yaml.safe_load((proj / "dvc.lock").read_text())
    return lock, outs


def relocked(committed: dict, fresh_lock: dict, outs: set[str]) -> dict:
    """`committed` with each stage's deps taken from `fresh`, but for deps that are stage outputs
    the committed lock already records; a stage new to dvc.yaml is taken from `fresh` whole."""
    new = {**committed, "stages": {}}
    for name in fresh_lock["stages"]:
        if name not in committed["stages"]:
            new["stages"][name] = fresh_lock["stages"][name]
            continue
        stage = committed["stages"][name]
        old = {d["path"]: d for d in stage.get("deps", [])}
        deps = [
            old[d["path"]] if d["path"] in outs and d["path"] in old else d
            for d in fresh_lock["stages"][name].get("deps", [])
        ]
        new["stages"][name] = {**stage, "deps": deps}
    return new


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only say whether dvc.lock's deps are current")
    p.add_argument("--only", nargs="+", metavar="STAGE", help="re-hash only these stages (a change that alters "
                   "the others' outputs must leave them stale, for `dvc repro` to re-run)")  # fmt: skip
    args = p.parse_args(argv)
    committed = yaml.safe_load((ROOT / "dvc.lock").read_text())
    fresh, outs = fresh_lock()
    new = relocked(committed, fresh, outs)
    for name in set(new["stages"]) - set(args.only or new["stages"]):
        if name in committed["stages"]:
            new["stages"][name] = committed["stages"][name]
    stale = [n for n in new["stages"] if committed["stages"].get(n, {}).get("deps") != new["stages"][n].get("deps")]
    if args.check:
        if stale:
            print(
                f"error: dvc.lock: the deps of {', '.join(stale)} differ from the code: `dvc repro` re-runs them; "
                "if the change only moved code and changed no output, `python tools/relock_deps.py` re-hashes them"
            )
            return 1
        print("dvc.lock: every stage's deps are current")
        return 0
    text = yaml.safe_dump(new, sort_keys=False)
    (ROOT / "dvc.lock").write_text(re.sub(r": null$", ":", text, flags=re.M))  # DVC writes nulls bare
    print(f"dvc.lock: re-hashed the deps of {', '.join(stale) or 'no stage'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
