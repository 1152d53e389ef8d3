"""Training compute, counted rather than estimated.

PyTorch's `FlopCounterMode` records the FLOPs of every matmul, convolution and attention call of
one real training step (forward and backward) of the model as built. Elementwise ops, norms and
the optimizer update are not counted (a few percent at most for these networks), the convention of
the scaling-law literature. Counted on a deep copy and a 2-example batch in float32, so neither the
model nor its random streams are touched; FLOPs of these networks are linear in the batch size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


def training_flops_per_example(model: torch.nn.Module, data: Callable[[np.ndarray], torch.Tensor]) -> float:
    """FLOPs of one forward and backward pass per training example (see the module docstring)."""
    n = 2
    probe = copy.deepcopy(model).float().cpu().requires_grad_(True)
    batch = data(np.arange(n)).float().cpu()
    noise = probe.draw_noise(n, torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        probe(batch, noise)["loss"].mean().backward()
    return counter.get_total_flops() / n


def training_flops(model: torch.nn.Module, data: Callable[[np.ndarray], torch.Tensor], cfg) -> dict:
    """The counted compute of a training run of `cfg.steps` steps of `cfg.batch_size` examples."""
    per_example = training_flops_per_example(model, data)
    return {"train_flops_per_example": per_example, "train_flops": per_example * cfg.batch_size * cfg.steps}
