"""Stage-2 training step on cached latents vs encoding each batch with the frozen encoder on the fly.

    python bench/stage2.py [--preset cpu] [--steps 20]

Both variants run the same base-model step on the same batch size, side by side in one run; the
printed ratio is what caching saves per step (the encoder forward on every batch).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ul import latent_cache
from ul.conf import preset_config
from ul.images import from_uint8
from ul.model import BaseModel, UnifiedLatents
from ul.shards import ShardReader, ShardWriter

CONF = Path(__file__).resolve().parents[1] / "conf"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    cfg = preset_config(CONF, args.preset)
    b = cfg.stage2.batch_size
    torch.manual_seed(0)
    model = UnifiedLatents(cfg).eval().requires_grad_(False)
    base = BaseModel(cfg)
    opt = torch.optim.AdamW(base.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        w = ShardWriter(Path(tmp) / "img")
        w.add(rng.integers(0, 256, (4096, *model.x_shape), dtype=np.uint8))
        w.close()
        images = ShardReader(Path(tmp) / "img")
        latent_cache.write(model, images, Path(tmp) / "lat", batch_size=512)
        latents = ShardReader(Path(tmp) / "lat")

        def step(z):
            loss = base(z, base.draw_noise(len(z), gen))["loss"].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def cached():
            step(torch.from_numpy(latents[rng.integers(0, len(latents), b)]))

        def on_the_fly():
            with torch.no_grad():
                z = model.encode(from_uint8(images[rng.integers(0, len(images), b)]))
            step(z)

        times = {}
        for name, fn in (("cached", cached), ("on_the_fly", on_the_fly)) * 2:  # interleaved, best of two
            fn()
            t = time.perf_counter()
            for _ in range(args.steps):
                fn()
            dt = (time.perf_counter() - t) / args.steps
            times[name] = min(dt, times.get(name, dt))
    print(f"preset={args.preset} batch={b} threads={torch.get_num_threads()}")
    for name, dt in times.items():
        print(f"{name:>11}: {dt * 1000:.1f} ms/step")
    print(f"on-the-fly / cached step time: {times['on_the_fly'] / times['cached']:.2f}x")


if __name__ == "__main__":
    main()
