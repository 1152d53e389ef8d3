"""Stage-1 training and sampling throughput of a preset in fp32 and bf16, side by side, with CPU "MFU".

    python bench/train.py [--preset cpu] [--steps 4] [--repeats 3] [--threads 0] [--precisions fp32 bf16]

In one process (these machines are noisy): the 2048² matmul FLOP/s in fp32 and in bf16, then
training steps of the preset's stage-1 model with `precision` fp32 and bf16 (ul.train.precision: bf16
autocast of the forward pass, float32 loss, optimizer and EMA) interleaved for `--repeats` rounds
(best round kept), then decoder sampling (`sample.sampler`, `sample.decoder_steps`) in both.
FLOPs per step are counted by torch's FlopCounterMode (the same count for both precisions). Prints
images/s, the bf16/fp32 speed-up, and MFU = achieved FLOP/s ÷ the matmul FLOP/s of the precision used
(training and sampling FLOPs both counted by FlopCounterMode on a real step / a real decode).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from _flops import add_precisions_arg, best_step_seconds, machine_note, matmul_flops
from torch.utils.flop_counter import FlopCounterMode

from ul.core.model import UnifiedLatents
from ul.params import preset_config
from ul.train import precision

CONF = Path(__file__).resolve().parents[1] / "conf"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=4, help="training steps per timed round")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    add_precisions_arg(p)
    p.add_argument("--samples", type=int, default=16, help="images decoded per sampling round")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    precs = args.precisions
    if args.threads:
        torch.set_num_threads(args.threads)
    note = machine_note()
    cfg = preset_config(CONF, args.preset)
    b = cfg.stage1.batch_size
    torch.manual_seed(0)
    init = UnifiedLatents(cfg)
    models = {prec: copy.deepcopy(init) for prec in precs}
    opts = {prec: torch.optim.AdamW(m.parameters(), lr=1e-4) for prec, m in models.items()}
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(b, *init.x_shape) * 2 - 1

    def step(prec: str) -> None:
        model, opt = models[prec], opts[prec]
        with precision.autocast(prec, "cpu"):
            terms = model(x, model.draw_noise(b, gen))
        loss = terms["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step(precs[0])  # FLOPs do not depend on the precision
    flops_per_step = fc.get_total_flops()
    peak = {prec: matmul_flops(prec) for prec in precs}
    train_dt = best_step_seconds(step, precs, args.steps, args.repeats)
    peak = {prec: max(peak[prec], matmul_flops(prec)) for prec in precs}  # best of before/after

    n, dsteps = args.samples, cfg.sample.decoder_steps
    ema = models[precs[0]].eval()
    with torch.no_grad():
        z0 = ema.noisy(ema.encode(x[:n]), torch.randn((n, *ema.z_shape), generator=gen))
    with FlopCounterMode(display=False) as fc, torch.no_grad():  # the sampler's network evaluations, counted
        ema.decode(z0, dsteps, cfg.sample.sampler, torch.Generator().manual_seed(1))
    flops_per_sample = fc.get_total_flops() / n
    sample_dt = dict.fromkeys(precs, float("inf"))
    for _ in range(max(1, args.repeats - 1)):
        for prec in precs:
            t = time.perf_counter()
            with torch.no_grad(), precision.autocast(prec, "cpu"):
                ema.decode(z0, dsteps, cfg.sample.sampler, torch.Generator().manual_seed(1))
            sample_dt[prec] = min(sample_dt[prec], time.perf_counter() - t)

    print(f"preset={args.preset} stage-1 batch={b} {note}")
    print(
        f"CPU bf16: native={precision.cpu_has_native_bf16()} (precision=auto trains in {precision.name('auto', 'cpu')})"
    )
    print("matmul 2048²: " + ", ".join(f"{q} {peak[q] / 1e9:.0f} GFLOP/s" for q in precs))
    print(f"stage-1 train, {flops_per_step / b / 1e9:.2f} GFLOP/image/step, best of {args.repeats}x{args.steps} steps:")
    for prec in precs:
        dt = train_dt[prec]
        mfu = flops_per_step / dt / peak[prec]
        print(
            f"  {prec}: {dt * 1000:6.0f} ms/step {b / dt:7.1f} images/s  "
            f"{flops_per_step / dt / 1e9:5.0f} GFLOP/s  MFU {mfu:.2f} of the {prec} matmul"
        )
    if set(precs) == {"fp32", "bf16"}:
        print(f"  bf16 / fp32 training throughput: {train_dt['fp32'] / train_dt['bf16']:.2f}x")
    print(
        f"sampling ({cfg.sample.sampler}, {dsteps} decoder steps, {n} images, {flops_per_sample / 1e9:.2f} GFLOP/image):"
    )
    for prec in precs:
        rate = n / sample_dt[prec]
        print(
            f"  {prec}: {rate:7.1f} images/s  {rate * flops_per_sample / 1e9:5.0f} GFLOP/s  "
            f"MFU {rate * flops_per_sample / peak[prec]:.2f} of the {prec} matmul"
        )
    if set(precs) == {"fp32", "bf16"}:
        print(f"  bf16 / fp32 sampling throughput: {sample_dt['fp32'] / sample_dt['bf16']:.2f}x")
    used = precision.name("auto", "cpu")  # what `make run` trains and samples in
    if used in precs:
        print(predict(cfg, flops_per_step, train_dt[used], flops_per_sample, n / sample_dt[used] * flops_per_sample))


def predict(cfg, step_flops: float, step_s: float, decode_flops_per_image: float, sample_flops_per_s: float) -> str:
    """The preset's pipeline in FLOPs (each training stage as it counts them, evaluation's decoder
    and base-model sampling) and its wall time at this machine's measured rates: stage 2 at stage
    1's training FLOP/s, evaluation at the decoder's sampling FLOP/s."""
    from ul.core.model import BaseModel
    from ul.train.flops import training_flops_per_example

    base = BaseModel(cfg)
    z = torch.randn(cfg.stage2.batch_size, *base.z_shape)
    s2_per_example = training_flops_per_example(base, lambda idx: z[torch.as_tensor(idx)])
    e, s = cfg.eval, cfg.sample
    flops = {
        "stage 1": cfg.stage1.steps * step_flops,
        "stage 2": cfg.stage2.steps * cfg.stage2.batch_size * s2_per_example,
        # reconstructions and samples through the decoder; samples through the base model (forward
        # only: a third of a training step's FLOPs per network evaluation)
        "evaluation": (e.num_images + e.fid_num_samples) * decode_flops_per_image
        + e.fid_num_samples * s.base_steps * s2_per_example / 3,
    }
    train_flops_per_s = step_flops / step_s
    seconds = {
        "stage 1": cfg.stage1.steps * step_s,
        "stage 2": flops["stage 2"] / train_flops_per_s,
        "evaluation": flops["evaluation"] / sample_flops_per_s,
    }
    parts = ", ".join(f"{k} {flops[k] / 1e12:.1f} TFLOPs ≈ {seconds[k] / 60:.1f} min" for k in flops)
    return (
        f"predicted `make run` at the {cfg.preset} preset on this machine: {sum(flops.values()) / 1e12:.0f} TFLOPs, "
        f"about {sum(seconds.values()) / 60:.0f} min ({parts}; the data stages, Inception and the latent "
        "statistics not counted)"
    )


if __name__ == "__main__":
    main()
