"""Latent caching: z_clean = E(x) of every training image, with the frozen EMA encoder, once.

    python -m ul.stages.cache_latents [--params params.yaml] [--model models/stage1] [--out data/latents]

Reads cache.device, cache.batch_size and cache.launch (more than one process: torchrun, each
rank encoding its share of the batches, the same bytes as one process). Writes memory-mappable float32 shards plus index.json with per-channel statistics (the stage-2
training data) and metrics/cache_latents.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ul.artifacts import export, latent_cache
from ul.common import distributed
from ul.common.device import resolve_device
from ul.common.shards import ShardReader
from ul.stages import _cli


def main(argv=None) -> int:
    p = _cli.parser("cache_latents", __doc__)
    p.add_argument("--data", default="data/pixels", help="decoded image shards (default: %(default)s)")
    p.add_argument("--model", default="models/stage1", help="stage-1 export folder (default: %(default)s)")
    p.add_argument("--out", default="data/latents", help="latent shard folder (default: %(default)s)")
    args = p.parse_args(argv)

    def body(cfg):
        device = resolve_device(cfg.cache.device)
        d = distributed.init(device, cfg.cache.launch.timeout_s)
        model, _ = export.load(args.model, device, expect=export.STAGE1)
        stats = latent_cache.write(
            model,
            _cli.read_input(ShardReader, Path(args.data) / "train", "pixels"),
            Path(args.out) / "train",
            cfg.cache.batch_size,
            device,
            d,
        )
        if stats is None:  # torchrun's other ranks: rank 0 writes the outputs
            return None
        return {"latent_count": stats["count"], "latent_std": stats["std"], "processes": d.world}

    return _cli.run(args, body, lambda cfg: cfg.cache.launch, argv)


if __name__ == "__main__":
    sys.exit(main())
