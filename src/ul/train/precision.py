"""Mixed precision: which autocast dtype a `precision` parameter (`auto | fp32 | bf16`) means on a device.

`auto` is bf16 where the hardware computes it natively, fp32 otherwise:
- CUDA: bf16 when `torch.cuda.is_bf16_supported()` (Ampere and later);
- CPU: bf16 when the CPU has bf16 instructions (x86 AVX-512 BF16 or AMX-BF16, read from
  `torch.cpu.get_capabilities()`; aarch64 `bf16` in /proc/cpuinfo). Without them oneDNN emulates
  bf16 with fp32 arithmetic plus conversions, which is slower than plain fp32, so `auto` keeps fp32.
`bf16` forces autocast (also where it is emulated), `fp32` turns it off.

Autocast changes only the matmuls and convolutions (and attention) to bf16; the networks cast
their outputs back to float32 (`VDenoiser`, `UnifiedLatents.encode`), so the loss terms, the
gradients of the float32 parameters, the optimizer state and the EMA stay float32.
"""

from __future__ import annotations

import functools
import platform
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from ul.common.config_checks import PRECISIONS


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic instructions (not just conversions)."""
    get = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    if get is not None:
        try:
            caps = get()
        except Exception:  # noqa: BLE001 (an unknown CPU: decide from /proc/cpuinfo below)
            caps = {}
        if caps.get("avx512_bf16") or caps.get("amx_bf16"):
            return True
    if platform.machine().lower() in ("aarch64", "arm64"):
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
        return any(line.startswith("Features") and " bf16" in f"{line} " for line in text.splitlines())
    return False


def autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype `precision` means on `device`, or None for plain float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: must be one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


def name(precision: str, device: str | torch.device) -> str:
    """`fp32` or `bf16`: what `precision` resolves to on `device` (for logs and benchmarks)."""
    return "fp32" if autocast_dtype(precision, device) is None else "bf16"


def autocast(precision: str, device: str | torch.device) -> AbstractContextManager:
    """`with autocast(cfg.precision, device):` around a forward pass (not around backward or the optimizer)."""
    dtype = autocast_dtype(precision, device)
    device = torch.device(device)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
