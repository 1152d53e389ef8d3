"""A tiny stage-1 run on synthetic images, for the resume/kill and torchrun tests.

    python tests/train_tiny.py OUT_DIR STEPS [CKPT_EVERY]      (also under torchrun)
The autocast precision (stage1.precision) is $UL_TINY_PRECISION, default fp32.
Writes OUT_DIR/params.pt (the final raw parameters) on rank 0.
"""

import os
import sys
from pathlib import Path

import torch

from ul.common.config import to_dict
from ul.core.model import UnifiedLatents
from ul.params import preset_config
from ul.train.loop import train

CONF = Path(__file__).resolve().parents[1] / "conf"


def main():
    out, steps = Path(sys.argv[1]), int(sys.argv[2])
    ckpt_every = int(sys.argv[3]) if len(sys.argv) > 3 else steps
    cfg = preset_config(CONF, "tiny")
    cfg.stage1.steps, cfg.stage1.ckpt_every = steps, ckpt_every
    cfg.stage1.precision = os.environ.get("UL_TINY_PRECISION", "fp32")
    torch.manual_seed(0)
    model = UnifiedLatents(cfg)
    images = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    model = train(
        model, lambda idx: images[torch.as_tensor(idx)], len(images), cfg.stage1, out, to_dict(cfg), progress=False
    )
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / "params.pt")


if __name__ == "__main__":
    main()
