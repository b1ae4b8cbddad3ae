"""Latent slicing along one axis, as ComfyUI's LatentCut and LatentCutToBatch
(comfy_extras/nodes_latent.py): the axes are named from the end of the latent's shape ("x" the
last, "y" the one before, "t" the one before that: the frames of a 5-D [B, C, T, h, w] latent,
such as Qwen-Image-Layered's layers)."""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Latent

AXES = {"x": 1, "y": 2, "t": 3}  # counted from the end of the shape
MAX_INDEX = 16384


def _axis(samples: Any, dim: str) -> int:
    axis = samples.ndim - AXES[dim]
    if axis < 2:  # ComfyUI would cut the channels (or the batch): refused
        raise NodeError(f"a latent of shape {tuple(samples.shape)} has no {dim!r} axis", "dim")
    return axis


def _samples(latent: Any) -> Any:
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if samples is None or not hasattr(samples, "ndim"):
        raise NodeError("expects a LATENT with samples", "samples")
    return samples


@node(category="latent", outputs={"latent": Latent})
def LatentCut(
    samples: Latent,
    dim: str = Input("x", choices=list(AXES)),
    index: int = Input(0, ge=-MAX_INDEX, le=MAX_INDEX),
    amount: int = Input(1, ge=1, le=MAX_INDEX),
) -> Any:
    """`amount` entries of the latent along `dim` from `index` (negative: from the end), cut
    to what the latent has, as ComfyUI's LatentCut. The noise mask, if any, is dropped when it
    no longer fits."""
    tensor = _samples(samples)
    axis = _axis(tensor, dim)
    size = int(tensor.shape[axis])
    if index >= 0:
        index = min(index, size - 1)
        amount = min(size - index, amount)
    else:
        index = max(index, -size)
        amount = min(-index, amount)
        index += size
    out = {**samples, "samples": tensor.narrow(axis, index, amount)}
    mask = out.get("noise_mask")
    if mask is not None and dim != "t":
        out.pop("noise_mask")  # a spatial cut: the mask no longer matches the latent
    return out


@node(category="latent", outputs={"latent": Latent})
def LatentCutToBatch(
    samples: Latent,
    dim: str = Input("t", choices=["t", "x", "y"]),
    slice_size: int = Input(1, ge=1, le=MAX_INDEX),
) -> Any:
    """The latent cut into slices of `slice_size` along `dim`, stacked in the batch (as
    ComfyUI's LatentCutToBatch; a remainder that does not fill a slice is dropped): a layered
    latent [B, C, T, h, w] with slice 1 along "t" becomes B * T one-frame latents."""
    tensor = _samples(samples)
    axis = tensor.ndim - AXES[dim]
    if axis < 2:  # nothing but the batch and channels before it: ComfyUI passes it through
        return samples
    moved = tensor.movedim(axis, 1)
    size = int(moved.shape[1])
    if size < slice_size:
        slice_size = size
    elif size % slice_size:
        moved = moved[:, : size - size % slice_size]
    cut = moved.reshape(-1, slice_size, *moved.shape[2:]).movedim(1, axis)
    out = {**samples, "samples": cut}
    out.pop("noise_mask", None)
    out.pop("batch_index", None)
    return out


NODES = [LatentCut, LatentCutToBatch]
