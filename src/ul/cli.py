"""`ul`: the command line of the library. Each pipeline stage is a subcommand (the same code DVC runs
as `python -m ul.stages.<stage>`); `ul params` composes conf/ into params.yaml the way `dvc exp run`
does, for `dvc repro` and plain runs.

    ul --help                      ul <stage> --help
    ul params [-o params.yaml] [overrides...]     e.g. ul params preset=ci noise.logsnr=3
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ul import conf

STAGES = ("fetch", "decode", "validate", "train_stage1", "cache_latents", "train_stage2", "evaluate")


def _params(argv) -> int:
    p = argparse.ArgumentParser(prog="ul params", description="Compose conf/ (Hydra) into params.yaml and validate it.")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. preset=ci noise.logsnr=3")
    p.add_argument("-o", "--out", default="params.yaml")
    p.add_argument("--conf", default="conf", help="Hydra config folder (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        conf.write_params(Path(args.conf), args.overrides, Path(args.out))
    except Exception as err:  # hydra and schema errors alike: one readable line
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {s.replace("_", "-"): s for s in STAGES}
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("commands:\n  params\n  " + "\n  ".join(commands) + "\n  data pin | release   (see `ul data --help`, `ul release --help`)")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "params":
        return _params(rest)
    if cmd in commands or cmd in STAGES:
        stage = commands.get(cmd, cmd)
        return importlib.import_module(f"ul.stages.{stage}").main(rest)
    print(f"error: unknown command {cmd!r}; try `ul --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
