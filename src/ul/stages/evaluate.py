"""Evaluate on the held-out split: PSNR, latent rate, rFID, gFID, sample and reconstruction grids.

    python -m ul.stages.evaluate [--params params.yaml] [--out eval] [--no-fid]

Reads seed, sample.*, eval.* (eval.device: auto | cpu | cuda; eval.launch: more than one process
runs it under torchrun, each rank decoding, sampling and computing features for its share). Writes eval/metrics.json (psnr_db, rfid, gfid, fid_num_samples,
latent_bits_per_image/_dim/_pixel/_subpixel, latent_use_nats, sampling_flops, and the pipeline's
sum: train_flops of both stages, as their exports record it, plus sampling_flops), eval/samples.png,
eval/reconstructions.png; Inception reference features are cached in data/fid_features. For video
(data.frames > 0) the metrics are per frame, plus rFVD/gFVD with the I3D weights of --i3d, and the
grids are animated PNGs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ul.artifacts import export
from ul.common import distributed
from ul.common.device import resolve_device
from ul.common.shards import ShardReader
from ul.core.model import BaseModel
from ul.eval.evaluate import evaluate
from ul.stages import _cli
from ul.stages.i3d_weights import DEFAULT as I3D_WEIGHTS


def main(argv=None) -> int:
    p = _cli.parser("evaluate", __doc__)
    p.set_defaults(metrics="eval/metrics.json")
    p.add_argument("--data", default="data/pixels", help="decoded image shards (default: %(default)s)")
    p.add_argument("--stage1", default="models/stage1", help="stage-1 export folder (default: %(default)s)")
    p.add_argument("--stage2", default="models/stage2", help="stage-2 export folder (default: %(default)s)")
    p.add_argument("--out", default="eval", help="grids folder (default: %(default)s)")
    p.add_argument(
        "--fid-cache",
        default="data/fid_features",
        help="cached Inception features of the reference images (default: %(default)s)",
    )
    p.add_argument("--i3d", default=I3D_WEIGHTS, help="I3D weights for FVD, video only (default: %(default)s)")
    p.add_argument("--no-fid", action="store_true", help="skip rFID/gFID and FVD (the slow part on CPU)")
    args = p.parse_args(argv)

    def body(cfg):
        device = resolve_device(cfg.eval.device)
        d = distributed.init(device, cfg.eval.launch.timeout_s)
        model, _ = export.load(args.stage1, device, expect=export.STAGE1)
        base, _ = export.load(args.stage2, device, expect=BaseModel)
        model.sample_compile = base.sample_compile = cfg.sample.compile  # this run's, not the exports'
        test = _cli.read_input(ShardReader, Path(args.data) / "test", "pixels")
        weights = args.i3d if cfg.data.frames else None
        result = evaluate(model, base, test, cfg, args.out, args.fid_cache, device, not args.no_fid, weights, d)
        if result is None:  # not rank 0
            return None
        return {**result, **pipeline_flops((args.stage1, args.stage2), result["sampling_flops"]), "processes": d.world}

    return _cli.run(args, body, lambda cfg: cfg.eval.launch, argv)


def pipeline_flops(exports, sampling: float) -> dict:
    """The pipeline's counted FLOPs: both stages' training (`train_flops` in each export's training
    summary) and evaluation's sampling. Empty when an export does not record its count."""
    train = [export.read_meta(f).get("training") for f in exports]
    counts = [t.get("train_flops") if isinstance(t, dict) else None for t in train]
    if not all(isinstance(c, int | float) and not isinstance(c, bool) for c in counts):
        return {}
    return {"train_flops": float(sum(counts)), "pipeline_flops": float(sum(counts) + sampling)}


if __name__ == "__main__":
    sys.exit(main())
