"""`ul results`: the studies of docs/results (rate-distortion, λ(0), UL vs KL-VAE, bitrate targets, video,
the headline, the prior gap, the recipe and evaluation's cost).

    ul results run [--study NAME] [--point NAME...] [--force]   run the missing DVC experiments, one at a time
    ul results report [--out docs/results] [--fresh]            write the tables and plots from `dvc exp show --json`
    ul results prior-gap --model models/stage1 --out F.json     how loose a stage-1 run's rate bound is

`report` keeps the rows of OUT/results.json whose points no repository has (experiments of an
earlier machine, whose `refs/exps` are not here): the documents grow point by point. It also
writes OUT/fid-noise.md's second section, the headline arms' spread over training seeds; `fid-noise`
writes the first, the sampling spread, and keeps the second.

Each point is a DVC experiment at the `sweep` preset, the video study's at `video`, the recipe
study's at `cpu` in bf16, run only where bf16 is native (`dvc exp show` lists them; `dvc exp apply <name>` restores one). `run` works in the current DVC workspace and
leaves the last point applied there; run it on a quiet machine (about 8 minutes a point on 2 cores,
17 image points; each of the 2 video points about 40 minutes).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from ul.common import errors
from ul.common.config_checks import INCEPTION_PRECISIONS
from ul.results import studies


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="ul results", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--repo",
        action="append",
        help="DVC repository (default: .); report reads the experiments of every --repo given, "
        "and writes into the first",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the studies' missing DVC experiments")
    r.add_argument("--study", choices=sorted(studies.STUDIES), help="one study only (default: all)")
    r.add_argument(
        "--point", action="append", choices=sorted(studies.BY_NAME), metavar="NAME", help="this point (repeatable)"
    )
    r.add_argument("--force", action="store_true", help="run every point again, replacing experiments of the same name")
    r.add_argument(
        "--preset",
        help="preset of every point (default: sweep, video for the video study; ci or video-ci check the mechanics)",
    )
    w = sub.add_parser(
        "report", help="write the tables and plots from the finished experiments (and fid-noise.md's seed section)"
    )
    w.add_argument("--out", default="docs/results", help="output folder (default: %(default)s)")
    w.add_argument("--fresh", action="store_true", help="ignore the rows already in OUT/results.json")
    f = sub.add_parser("fid-noise", help="measure FID's spread over draws at several N (to size eval.fid_num_samples)")
    f.add_argument("--data", default="data/pixels/test", help="real test image shards (default: %(default)s)")
    f.add_argument("--models", help="folder with stage1/ and stage2/ exports: add gFID (default: the floor only)")
    f.add_argument("--pool", type=int, default=4000, help="real images with features (default: %(default)s)")
    f.add_argument("--generated", type=int, default=1000, help="samples with --models (default: %(default)s)")
    f.add_argument("--n", type=int, nargs="+", default=[250, 500, 1000], help="set sizes (default: %(default)s)")
    f.add_argument("--draws", type=int, default=10, help="draws per N (default: %(default)s)")
    f.add_argument("--precision", choices=INCEPTION_PRECISIONS, default="bf16", help="Inception (default: %(default)s)")
    f.add_argument("--out", default="docs/results/fid-noise.md", help="markdown table (default: %(default)s)")
    g = sub.add_parser("prior-gap", help="a fresh prior on a stage-1 run's frozen latents: how loose its rate bound is")
    g.add_argument("--model", default="models/stage1", help="stage-1 export (default: %(default)s)")
    g.add_argument("--data", default="data/pixels", help="image shards with train/ and test/ (default: %(default)s)")
    g.add_argument("--steps", type=int, default=3000, help="fresh prior's training steps (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="fresh prior's initial weights and draws (default: %(default)s)")
    g.add_argument("--out", required=True, help="JSON file of the measurement")
    args = p.parse_args(argv)
    repos = [Path(r) for r in args.repo or ["."]]
    repo = repos[0]
    try:
        if args.cmd == "run":
            from ul.results import run

            not_done = run.run(repo, args.study, args.force, args.preset and f"preset={args.preset}", names=args.point)
            if not_done:
                return errors.report(
                    "experiments not done: " + ", ".join(f"{n} ({why})" for n, why in not_done.items())
                )
            return 0
        if args.cmd == "fid-noise":
            return _fid_noise(args)
        if args.cmd == "prior-gap":
            return _prior_gap(args)
        from ul.results import report

        exps = {name: x for r in repos for name, x in report.load(r).items()}
        kept = {} if args.fresh else report.load_rows(repo / args.out / "results.json", exclude=set(exps))
        wrote = report.write({**kept, **exps}, repo / args.out)
        print(
            f"wrote {wrote} ({len(exps) + len(kept)} of {len(studies.POINTS)} points, {len(kept)} kept from results.json)"
        )
        return 0
    except subprocess.CalledProcessError as err:
        last = (err.stderr or "").strip().splitlines()[-1:] or [f"exit {err.returncode}"]
        return errors.report(f"{' '.join(err.cmd[2:4])}: {last[0]}")


def _fid_noise(args) -> int:
    import json

    import numpy as np
    import torch

    from ul.common.shards import ShardReader
    from ul.eval import inception
    from ul.results import fid_noise

    test = ShardReader(args.data)
    rows = np.sort(np.random.default_rng(0).permutation(len(test))[: args.pool])
    feats = inception.InceptionFeatures(precision=args.precision)
    real, fake, note = feats(test[rows]), None, f"Real: {len(rows)} test images of {args.data}"
    if args.models:
        from ul import LatentDiffusion

        g = LatentDiffusion.load(Path(args.models) / "stage1", Path(args.models) / "stage2")
        images = g.sample(args.generated, generator=torch.Generator().manual_seed(1), progress=True)
        fake = feats(images.add(1).div(2).clamp(0, 1))
        note += f"; generated: {args.generated} samples of {args.models} (dpm2m, 50 + 50 steps)"
    note += f"; Inception in {args.precision} (the spread, not the level, is the point)."
    table = fid_noise.measure(real, fake, args.n, args.draws)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = fid_noise.split_seed_section(out.read_text())[1] if out.is_file() else ""
    out.write_text(fid_noise.with_seed_section(fid_noise.markdown(table, note), kept))
    out.with_suffix(".json").write_text(json.dumps(table, indent=1) + "\n")
    print(out.read_text())
    return 0


def _prior_gap(args) -> int:
    import json

    from ul.artifacts import export
    from ul.common import atomic
    from ul.common.shards import ShardReader
    from ul.core.model import UnifiedLatents
    from ul.results import prior_gap

    model, _ = export.load(args.model, expect=UnifiedLatents)
    data = Path(args.data)
    result = prior_gap.measure(model, ShardReader(data / "train"), ShardReader(data / "test"), args.steps, args.seed)
    result["model"] = str(args.model)
    atomic.write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "fresh_curve"}))
    return 0
