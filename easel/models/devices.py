"""Device and dtype policy: cuda, then mps, then cpu; half precision on accelerators only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DTYPE_NAMES = {
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def pick_device(requested: str | None = None) -> Any:
    """The device to compute on: `requested` (EASEL_DEVICE) or the best one available."""
    import torch

    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: Any, requested: str | None = None) -> Any:
    """fp32 on the CPU (half-precision weights are upcast); bf16 or fp16 on accelerators."""
    import torch

    if requested:
        try:
            return getattr(torch, DTYPE_NAMES[requested.lower()])
        except KeyError:
            raise ValueError(
                f"unknown dtype {requested!r}; use one of {', '.join(sorted(DTYPE_NAMES))}"
            ) from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def free_memory(device: Any) -> int | None:
    """Free bytes on an accelerator, or None where that cannot be asked (cpu, mps)."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def from_environment(environ: Mapping[str, str] | None = None) -> tuple[Any, Any]:
    """(device, dtype) from EASEL_DEVICE and EASEL_DTYPE, or the defaults above."""
    env = os.environ if environ is None else environ
    device = pick_device(env.get("EASEL_DEVICE") or None)
    return device, pick_dtype(device, env.get("EASEL_DTYPE") or None)
