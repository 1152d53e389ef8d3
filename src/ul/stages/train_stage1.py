"""Stage 1: train encoder, latent prior and decoder jointly (L = L_z + L_x).

    python -m ul.stages.train_stage1 [--params params.yaml] [--data data/pixels] [--out models/stage1]
    stage1.launch: {nnodes, nproc_per_node, rdzv_endpoint, max_restarts, timeout_s} runs it under torchrun
    (ul.common.launch: data parallel, on this machine or several; rank 0 writes the outputs)

Reads seed, data.*, noise.*, unified.*, klvae.*, encoder.*, prior.*, decoder.*, stage1.*. Writes <out>/ckpt.pt
(atomic, every stage1.ckpt_every steps: a killed run resumes from it when re-run with the same
parameters and data), the export <out>/{model.safetensors,config.json,README.md} (EMA weights,
config with the latents' statistics over the training split, model card; `ul.Autoencoder.load(<out>)`), the training curve
metrics/stage1_train.tsv and the summary metrics/train_stage1.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ul.artifacts import export, latent_stats
from ul.common import distributed
from ul.common.images import from_uint8
from ul.common.shards import ShardReader
from ul.core.model import stage1_model
from ul.stages import _cli
from ul.train import flops, rate_target, summary
from ul.train.loop import CKPT, train

KEYS = ("seed", "latent", "data", "noise", "unified", "klvae", "encoder", "prior", "decoder", "stage1")


def main(argv=None) -> int:
    p = _cli.parser("train_stage1", __doc__)
    p.add_argument("--data", default="data/pixels", help="decoded image shards (default: %(default)s)")
    p.add_argument("--out", default="models/stage1", help="checkpoint and model folder (default: %(default)s)")
    p.add_argument("--log", default="metrics/stage1_train.tsv", help="training curve (default: %(default)s)")
    args = p.parse_args(argv)

    def body(cfg):
        images = _cli.read_input(ShardReader, Path(args.data) / "train", "pixels")
        torch.manual_seed(cfg.seed)  # the initial weights are part of the run: `seed` fixes them too
        model = stage1_model(cfg)  # UnifiedLatents, or the KL-VAE baseline (latent: klvae)
        t0 = time.time()
        ema = train(
            model,
            lambda idx: from_uint8(images[idx]),
            len(images),
            cfg.stage1,
            args.out,
            summary.run_identity(cfg, KEYS, images),
            cfg.seed,
            args.log,
            desc="stage1",
            after_step=rate_target.callbacks(model, cfg),
        )
        if not distributed.is_main():  # torchrun's other ranks: rank 0 writes the outputs
            return None
        metrics = {
            **summary.training_summary(cfg.stage1, t0, args.log),
            **flops.training_flops(ema, lambda idx: from_uint8(images[idx]), cfg.stage1),
            **{f"params_{name}": summary.count(part) for name, part in ema.named_children()},
        }
        device = next(ema.parameters()).device
        latents = latent_stats.measure(ema, images, device, cfg.seed)
        metrics["latent_bits_per_image"] = latents["rate"]["bits_per_image"]  # over the training split, one draw
        export.save(ema, cfg, args.out, metrics, latents)
        return metrics

    return _cli.run(args, body, lambda cfg: cfg.stage1.launch, argv, Path(args.out) / CKPT)


if __name__ == "__main__":
    sys.exit(main())
