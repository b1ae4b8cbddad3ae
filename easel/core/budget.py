"""One resource budget for images: pixels x frames x batch, checked before anything allocates.

Nodes read the host's budget from `ctx.services["budget"]` (the server sets it from its
settings); without one, `EASEL_MAX_PIXELS` or the default applies. The default lets a GPU user
make a 2048x2048 batch of 4 (and a 4096x4096 batch of 4) and refuses memory bombs such as a
400-frame 2000x2000 animation or a 16384x16384 upscale of a batch of 64.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024  # 4096 x 4096 x 4
BYTES_PER_PIXEL = 16  # float32 RGBA: what one pixel of an image tensor can cost
ENV = "EASEL_MAX_PIXELS"


@dataclass(frozen=True)
class Budget:
    """The most pixels (width x height x frames x batch) one image or latent may hold."""

    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def max_bytes(self) -> int:
        """The memory the budget implies for one float32 RGBA tensor of that many pixels."""
        return self.max_pixels * BYTES_PER_PIXEL

    def problem(self, width: int, height: int, frames: int = 1, batch: int = 1) -> str | None:
        """Why `width` x `height` x `frames` x `batch` is refused, or None if it fits."""
        total = int(width) * int(height) * max(1, int(frames)) * max(1, int(batch))
        if total <= self.max_pixels:
            return None
        parts = f"{width}x{height}"
        if frames > 1:
            parts += f" x {frames} frames"
        if batch > 1:
            parts += f" x batch {batch}"
        gib = total * BYTES_PER_PIXEL / 1024**3
        return (
            f"{parts} is {total:,} pixels (about {gib:.1f} GiB as float32), over the "
            f"budget of {self.max_pixels:,} pixels (width x height x frames x batch); "
            f"make it smaller, or raise the budget ({ENV} or `easel serve --max-pixels`)"
        )


def from_environment(environ: Mapping[str, str] | None = None) -> Budget:
    env = os.environ if environ is None else environ
    raw = env.get(ENV, "").strip().replace("_", "")
    if raw.isdigit() and int(raw) > 0:
        return Budget(int(raw))
    return Budget()


def budget_of(services: Mapping[str, Any]) -> Budget:
    """The budget a host gave its nodes, else the environment's or the default."""
    found = services.get("budget")
    if isinstance(found, Budget):
        return found
    if isinstance(found, int) and found > 0:
        return Budget(found)
    return from_environment()
