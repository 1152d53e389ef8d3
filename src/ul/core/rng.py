"""Noise for a batch, from one generator or from one generator per example.

With one `torch.Generator` a batch's draws are one stream: an example's noise depends on its place
in the batch and on the batch size. With a list of generators (one per example, as diffusers takes
them) each example draws from its own stream, so its result is the same in any batch; `per_example`
derives those generators from a seed and each example's index. Draws are made on the CPU and then
moved, so a seed gives the same numbers on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(shape, generator: Generators = None) -> torch.Tensor:
    """A standard normal tensor of `shape` on the CPU; with a list, row i from generator i."""
    if isinstance(generator, Sequence):
        check(generator, shape[0])
        return (
            torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generator])
            if generator
            else torch.empty(shape)
        )
    return torch.randn(tuple(shape), generator=generator)


def check(generators: Sequence, n: int) -> None:
    if len(generators) != n:
        raise ValueError(f"{len(generators)} generators for a batch of {n}: give one per example, or one generator")


def per_example(seed: int, first: int, n: int) -> list[torch.Generator]:
    """Generators of examples first, ..., first + n − 1, each seeded from (seed, index) through
    numpy's SeedSequence (well-mixed: neighbouring indices give unrelated streams)."""
    return [
        torch.Generator().manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0] >> 1))
        for i in range(first, first + n)
    ]
