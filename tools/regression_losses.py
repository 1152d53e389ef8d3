"""The pinned loss terms of tests/unit/test_regression.py: stage 1 at the `ci` preset, seed 0, on a
fixed batch of synthetic images, through the real training loop (its noise draws, their order,
the EMA and the optimiser), logged at step 1 (the initial weights) and step 6 (after 5 updates).

    python tools/regression_losses.py            # print the terms
    python tools/regression_losses.py --write    # regenerate tests/data/ci_losses.json

Regenerate only when a change is meant to change the numbers, and say why in the commit.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import torch

from ul.common.config import to_dict
from ul.core.model import UnifiedLatents
from ul.params import preset_config
from ul.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
PINNED = ROOT / "tests" / "data" / "ci_losses.json"
STEPS = (1, 6)  # the loss at the initial weights, and after 5 optimizer steps
TERMS = ("loss", "prior", "decoder", "grad_norm")


def loss_terms() -> dict[str, dict[str, float]]:
    cfg = preset_config(ROOT / "conf", "ci")
    cfg.stage1.steps, cfg.stage1.log_every, cfg.stage1.ckpt_every, cfg.stage1.threads = STEPS[-1], 1, 100, 1
    cfg.stage1.precision = "fp32"
    torch.manual_seed(0)
    model = UnifiedLatents(cfg)
    images = torch.rand(64, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with tempfile.TemporaryDirectory(prefix="ul-regression-") as tmp:
        log = Path(tmp) / "curve.tsv"
        train(
            model,
            lambda i: images[torch.as_tensor(i)],
            len(images),
            cfg.stage1,
            tmp,
            to_dict(cfg),
            0,
            log,
            progress=False,
        )
        with log.open() as f:
            rows = {int(r["step"]): r for r in csv.DictReader(f, delimiter="\t")}
    return {str(s): {k: float(rows[s][k]) for k in TERMS} for s in STEPS}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help=f"write {PINNED.relative_to(ROOT)}")
    args = p.parse_args(argv)
    terms = loss_terms()
    text = json.dumps(terms, indent=1) + "\n"
    if args.write:
        PINNED.parent.mkdir(parents=True, exist_ok=True)
        PINNED.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
