"""Stage 2: train the base diffusion model on the frozen, cached latents (sigmoid-weighted, λ ≤ λ(0)).

    python -m ul.stages.train_stage2 [--params params.yaml] [--latents data/latents] [--out models/stage2]
    stage2.launch: {nnodes, nproc_per_node, rdzv_endpoint, max_restarts, timeout_s} runs it under torchrun
    (ul.common.launch: data parallel, on this machine or several; rank 0 writes the outputs)

Reads seed, noise.*, base.*, stage2.* (and the shapes of data/encoder). Writes <out>/ckpt.pt
(resumable), the export <out>/{model.safetensors,config.json,README.md}, metrics/stage2_train.tsv and metrics/train_stage2.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ul.artifacts import export, latent_cache
from ul.common import distributed
from ul.core.model import BaseModel
from ul.stages import _cli
from ul.train import flops, summary
from ul.train.loop import CKPT, train

KEYS = ("seed", "latent", "data", "noise", "encoder", "base", "stage2")


def main(argv=None) -> int:
    p = _cli.parser("train_stage2", __doc__)
    p.add_argument("--latents", default="data/latents", help="latent cache (default: %(default)s)")
    p.add_argument("--out", default="models/stage2", help="checkpoint and model folder (default: %(default)s)")
    p.add_argument("--log", default="metrics/stage2_train.tsv", help="training curve (default: %(default)s)")
    args = p.parse_args(argv)

    def body(cfg):
        latents = _cli.read_input(latent_cache.read, Path(args.latents) / "train", "cache_latents")
        # Either latent is scaled to unit variance, as SD scales its KL-VAE latents; UL's schedule
        # follows the scale, so its z0 endpoint stays where the decoder reads it (docs/method.md §8).
        scale = 1.0 / latents.index["stats"]["std"]
        torch.manual_seed(cfg.seed)  # the initial weights are part of the run: `seed` fixes them too
        model = BaseModel(cfg, latent_scale=scale)
        t0 = time.time()
        ema = train(
            model,
            lambda idx: torch.from_numpy(latents[idx]),
            len(latents),
            cfg.stage2,
            args.out,
            summary.run_identity(cfg, KEYS, latents),
            cfg.seed,
            args.log,
            desc="stage2",
        )
        if not distributed.is_main():  # torchrun's other ranks: rank 0 writes the outputs
            return None
        metrics = {
            **summary.training_summary(cfg.stage2, t0, args.log),
            **flops.training_flops(ema, lambda idx: torch.from_numpy(latents[idx]), cfg.stage2),
            "params_base": summary.count(ema),
            "parameterisation": BaseModel.parameterisation,
        }
        export.save(ema, cfg, args.out, metrics)
        return metrics

    return _cli.run(args, body, lambda cfg: cfg.stage2.launch, argv, Path(args.out) / CKPT)


if __name__ == "__main__":
    sys.exit(main())
