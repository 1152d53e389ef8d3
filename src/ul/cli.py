"""`ul`: the command line of the library.

Use a trained model on your own files (models default to models/stage1 and models/stage2):
    ul encode IMAGES... | FOLDER -o latents.npz      ul decode latents.npz -o FOLDER
    ul reconstruct IMAGES... -o FOLDER               ul rate IMAGES... [--json]
    ul sample -n 16 -o grid.png | FOLDER             ul export OUT   (shareable models + model cards)
Each pipeline stage is a subcommand too (the same code DVC runs as `python -m ul.stages.<stage>`);
`ul params` composes conf/ into params.yaml the way `dvc exp run` does, for `dvc repro` and plain runs.

    ul --help                      ul <command> --help
    ul params [-o params.yaml] [overrides...]     e.g. ul params preset=ci noise.logsnr=3
    ul data pin lakefs://repo/<branch>/path       write data.source = lakefs://repo/<commit>/path
    ul release lakefs://repo/<branch>/path        upload models + model card to lakeFS, commit
    ul results run | report                       the studies of docs/results (DVC experiments)
lakeFS endpoint and keys come from LAKEFS_HOST, LAKEFS_ACCESS_KEY_ID, LAKEFS_SECRET_ACCESS_KEY
(and LAKEFS_ENDPOINT for the S3 gateway when it differs), never from params.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ul import extras
from ul.common.errors import report

MODEL_COMMANDS = ("encode", "decode", "reconstruct", "rate", "sample", "info", "export")
STAGES = ("source", "fetch", "pixels", "validate", "train_stage1", "cache_latents", "train_stage2", "evaluate")


def _params(argv) -> int:
    p = argparse.ArgumentParser(prog="ul params", description="Compose conf/ (Hydra) into params.yaml and validate it.")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. preset=ci noise.logsnr=3")
    p.add_argument("-o", "--out", default="params.yaml")
    p.add_argument("--conf", default="conf", help="Hydra config folder (default: %(default)s)")
    args = p.parse_args(argv)
    from ul.params import write_params

    try:
        write_params(Path(args.conf), args.overrides, Path(args.out))
    except Exception as err:  # hydra and schema errors alike: one readable line
        return report(err)
    print(f"wrote {args.out}")
    return 0


def _data(argv) -> int:
    p = argparse.ArgumentParser(prog="ul data", description="Data commands.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pin = sub.add_parser(
        "pin",
        help="resolve a lakeFS branch to its commit and write it into data.source",
        description="Resolve lakefs://repo/<ref>/path to the ref's current commit through the lakeFS "
        "API and write lakefs://repo/<commit>/path as data.source into the Hydra config "
        "and params.yaml, so the fetch stage's DVC hash names immutable data.",
    )
    pin.add_argument("url", help="lakefs://repo/<branch or ref>/path")
    pin.add_argument("--conf", default="conf/config.yaml", help="Hydra config to update (default: %(default)s)")
    pin.add_argument("--params", default="params.yaml", help="params file to update (default: %(default)s)")
    args = p.parse_args(argv)
    from ul.storage import StorageError, lakefs

    try:
        pinned = lakefs.pin(args.url, Path(args.conf), Path(args.params))
    except StorageError as err:
        return report(err)
    print(f"data.source = {pinned}  (written to {args.conf} and {args.params})")
    return 0


def _release(argv) -> int:
    from ul import release

    p = argparse.ArgumentParser(
        prog="ul release", description=release.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("target", help="lakefs://repo/<branch>[/path] to upload under")
    p.add_argument(
        "--source-ref",
        default="main",
        help="branch the target branch is created from if missing (default: %(default)s)",
    )
    p.add_argument("--message", "-m", help="commit message")
    p.add_argument(
        "--root",
        default=".",
        help="pipeline work tree with models/, eval/, params.yaml, dvc.lock (default: %(default)s)",
    )
    args = p.parse_args(argv)
    from ul.storage import StorageError

    try:
        out = release.release(args.target, args.root, args.source_ref, args.message)
    except StorageError as err:
        return report(err)
    print(f"released {len(out['files'])} files as lakeFS commit {out['commit']}: {out['url']}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(argv)
    except ModuleNotFoundError as err:  # an optional part not installed: say which extra, in one line
        if extras.extra_of(err) is None:
            raise
        return report(extras.message(err, f"`ul {argv[0]}`"))


def _dispatch(argv) -> int:
    commands = {s.replace("_", "-"): s for s in STAGES}
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("use a trained model (`ul <command> --help`):\n  " + "  ".join(MODEL_COMMANDS))
        print("pipeline stages (what `dvc repro` runs; `ul stage <name>`, or `ul <name>`):\n  " + "  ".join(commands))
        print("other:\n  serve  params  data pin  release  results   (see `ul serve --help`, `ul data --help`, ...)")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "params":
        return _params(rest)
    if cmd == "serve":
        from ul.serve import cli as serve

        return serve.main(rest)
    if cmd == "data":
        return _data(rest)
    if cmd == "release":
        return _release(rest)
    if cmd == "results":
        from ul.results import cli

        return cli.main(rest)
    if cmd == "stage" and rest:  # `ul stage pixels` is the pixels stage; `ul decode` decodes latents
        cmd, rest = rest[0], rest[1:]
    elif cmd in MODEL_COMMANDS:
        from ul import commands

        return commands.run(cmd, rest)
    if cmd in commands or cmd in STAGES:
        stage = commands.get(cmd, cmd)
        return importlib.import_module(f"ul.stages.{stage}").main(rest)
    report(f"unknown command {cmd!r}; try `ul --help`")
    return 2


if __name__ == "__main__":
    sys.exit(main())
