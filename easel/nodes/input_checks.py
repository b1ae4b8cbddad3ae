"""Shape checks of IMAGE and MASK inputs that several nodes make alike, refusing by name."""

from __future__ import annotations

from typing import Any

from easel.core.node import NodeError


def require_rgb(image: Any, input_name: str = "image") -> None:
    """Refuses (naming the input) anything but an IMAGE [B, C, H, W] of at least 3 channels."""
    if getattr(image, "ndim", 0) != 4 or image.shape[1] < 3:
        raise NodeError(
            f"expects an RGB IMAGE [B, 3, H, W], got {tuple(getattr(image, 'shape', ()))}",
            input_name,
        )


def mask_batch(mask: Any, input_name: str = "mask") -> Any:
    """A MASK as [B, H, W] (a single [H, W] mask gets a batch of one); other shapes are
    refused, naming the input."""
    if getattr(mask, "ndim", 0) not in (2, 3):
        raise NodeError(
            f"expects a MASK [B, H, W], got {tuple(getattr(mask, 'shape', ()))}", input_name
        )
    return mask[None] if mask.ndim == 2 else mask
