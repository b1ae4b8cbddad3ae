"""Mask, channel and compositing utilities that ComfyUI's templates use
(comfy_extras/nodes_mask.py, nodes_compositing.py, EmptyImage and ImageInvert of nodes.py), on
Easel's [B, C, H, W] images and [B, H, W] masks. Nodes whose inputs are ComfyUI's keep
ComfyUI's names."""

from __future__ import annotations

from typing import Any

from easel.core.budget import budget_of
from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Image, Mask

CHANNELS = ["red", "green", "blue", "alpha"]
MAX_SIDE = 16384
MASK_OPERATIONS = ["multiply", "add", "subtract", "and", "or", "xor"]


def _check_size(ctx: Context, width: int, height: int, batch: int, input_name: str) -> None:
    problem = budget_of(ctx.services).problem(width, height, batch=batch)
    if problem:
        raise NodeError(problem, input_name)


def _to_batch(tensor: Any, size: int) -> Any:
    """The first `size` items, repeating the batch when it is shorter (ComfyUI's
    repeat_to_batch_size)."""
    if tensor.shape[0] >= size:
        return tensor[:size]
    repeats = -(-size // tensor.shape[0])
    return tensor.repeat(repeats, *([1] * (tensor.ndim - 1)))[:size]


@node(category="image", outputs={"image": Image})
def InvertImage(image: Image) -> Any:
    """1 - image (ComfyUI's ImageInvert)."""
    return 1.0 - image


@node(category="mask", outputs={"mask": Mask})
def InvertMask(mask: Mask) -> Any:
    """1 - mask."""
    return 1.0 - mask


@node(category="mask", outputs={"mask": Mask})
def ImageToMask(image: Image, channel: str = Input("red", choices=CHANNELS)) -> Any:
    """One channel of an image as a mask."""
    index = CHANNELS.index(channel)
    if index >= image.shape[1]:
        raise NodeError(f"the image has {image.shape[1]} channels, no {channel} channel", "channel")
    return image[:, index].clone()


@node(category="mask", outputs={"image": Image})
def MaskToImage(mask: Mask) -> Any:
    """A mask as a grey RGB image."""
    return mask.reshape(-1, 1, *mask.shape[-2:]).expand(-1, 3, -1, -1).clone()


@node(category="mask", outputs={"image": Image})
def JoinImageWithAlpha(image: Image, alpha: Mask) -> Any:
    """An RGBA image whose alpha is 1 - mask (a mask is 1 where transparent), the mask resized
    (bilinear) to the image; the batch is the shorter of the two (ComfyUI's node)."""
    import torch
    import torch.nn.functional as F

    planes = alpha.reshape(-1, 1, *alpha.shape[-2:]).float()
    planes = F.interpolate(planes, size=tuple(image.shape[-2:]), mode="bilinear")
    batch = min(image.shape[0], planes.shape[0])
    return torch.cat([image[:batch, :3], 1.0 - planes[:batch]], dim=1)


@node(category="mask", outputs={"mask": Mask}, output_node=True)
def PreviewMask(ctx: Context, mask: Mask) -> dict[str, Any]:
    """Show a mask as a grey image, without keeping it (ComfyUI's MaskPreview): written to
    the output folder's preview/ subfolder; `mask` passes it on."""
    from easel.nodes.image_io import PREVIEW_FOLDER, save_pictures

    picture = mask.reshape(-1, 1, *mask.shape[-2:]).expand(-1, 3, -1, -1)
    return {"mask": mask, "ui": {"files": save_pictures(ctx, picture, f"{PREVIEW_FOLDER}/mask")}}


@node(category="image", outputs={"image": Image})
def EmptyImage(
    ctx: Context,
    width: int = Input(512, ge=1, le=MAX_SIDE),
    height: int = Input(512, ge=1, le=MAX_SIDE),
    batch_size: int = Input(1, ge=1, le=4096),
    color: int = Input(0, ge=0, le=0xFFFFFF),
) -> Any:
    """An image of one colour, `color` as 0xRRGGBB."""
    import torch

    _check_size(ctx, width, height, batch_size, "width")
    rgb = (
        torch.tensor([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF], dtype=torch.float32)
        / 0xFF
    )
    return rgb.reshape(1, 3, 1, 1).expand(batch_size, 3, height, width).clone()


@node(category="mask", outputs={"mask": Mask})
def SolidMask(
    ctx: Context,
    value: float = Input(1.0, ge=0.0, le=1.0, step=0.01),
    width: int = Input(512, ge=1, le=MAX_SIDE),
    height: int = Input(512, ge=1, le=MAX_SIDE),
) -> Any:
    """A mask of one value."""
    import torch

    _check_size(ctx, width, height, 1, "width")
    return torch.full((1, height, width), float(value))


@node(category="mask", outputs={"mask": Mask})
def ThresholdMask(mask: Mask, value: float = Input(0.5, ge=0.0, le=1.0, step=0.01)) -> Any:
    """1 where the mask is above `value`, else 0."""
    return (mask > value).float()


@node(category="mask", outputs={"mask": Mask})
def FeatherMask(
    mask: Mask,
    left: int = Input(0, ge=0, le=MAX_SIDE),
    top: int = Input(0, ge=0, le=MAX_SIDE),
    right: int = Input(0, ge=0, le=MAX_SIDE),
    bottom: int = Input(0, ge=0, le=MAX_SIDE),
) -> Any:
    """Fade the mask linearly to 0 over that many pixels from each edge, exactly as ComfyUI's
    node (whose right and bottom ramps start on index -0, the first column and row: kept, so
    masks match ComfyUI's)."""
    out = mask.reshape(-1, *mask.shape[-2:]).clone()
    left, right = min(left, out.shape[-1]), min(right, out.shape[-1])
    top, bottom = min(top, out.shape[-2]), min(bottom, out.shape[-2])
    for x in range(left):
        out[:, :, x] *= (x + 1.0) / left
    for x in range(right):
        out[:, :, -x] *= (x + 1) / right
    for y in range(top):
        out[:, y, :] *= (y + 1) / top
    for y in range(bottom):
        out[:, -y, :] *= (y + 1) / bottom
    return out


@node(category="mask", outputs={"mask": Mask})
def MaskComposite(
    destination: Mask,
    source: Mask,
    x: int = Input(0, ge=0, le=MAX_SIDE),
    y: int = Input(0, ge=0, le=MAX_SIDE),
    operation: str = Input("multiply", choices=MASK_OPERATIONS),
) -> Any:
    """Combine `source`, placed at (x, y), into `destination` (multiply, add, subtract, or the
    logical and, or, xor of the rounded masks); the result is clamped to 0..1."""
    import torch

    out = destination.reshape(-1, *destination.shape[-2:]).clone()
    source = source.reshape(-1, *source.shape[-2:])
    right = min(x + source.shape[-1], out.shape[-1])
    bottom = min(y + source.shape[-2], out.shape[-2])
    if right <= x or bottom <= y:
        return out.clamp(0.0, 1.0)
    part = source[:, : bottom - y, : right - x]
    region = out[:, y:bottom, x:right]
    if operation == "multiply":
        combined = region * part
    elif operation == "add":
        combined = region + part
    elif operation == "subtract":
        combined = region - part
    else:
        logical = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}[
            operation
        ]
        combined = logical(region.round().bool(), part.round().bool()).float()
    out[:, y:bottom, x:right] = combined
    return out.clamp(0.0, 1.0)


@node(category="image", outputs={"image": Image})
def ImageCompositeMasked(
    destination: Image,
    source: Image,
    x: int = Input(0, ge=0, le=MAX_SIDE),
    y: int = Input(0, ge=0, le=MAX_SIDE),
    resize_source: bool = False,
    mask: Mask | None = None,
) -> Any:
    """Paste `source` onto `destination` at (x, y), through `mask` (resized to the source;
    1 is the source) when given; `resize_source` first resizes the source to the
    destination. An RGB image meeting an RGBA one gets an opaque alpha (ComfyUI's node)."""
    import torch
    import torch.nn.functional as F

    channels = max(destination.shape[1], source.shape[1])

    def with_alpha(image: Any) -> Any:
        if image.shape[1] < channels:
            pad = torch.ones(image.shape[0], channels - image.shape[1], *image.shape[2:])
            return torch.cat([image, pad.to(image.dtype)], dim=1)
        return image

    out = with_alpha(destination).clone()
    source = with_alpha(source)
    if resize_source:
        source = F.interpolate(source, size=tuple(out.shape[-2:]), mode="bilinear")
    source = _to_batch(source, out.shape[0])
    height, width = source.shape[-2:]
    x, y = min(x, out.shape[-1]), min(y, out.shape[-2])
    if mask is None:
        weight = torch.ones_like(source)
    else:
        weight = F.interpolate(
            mask.reshape(-1, 1, *mask.shape[-2:]).float(), size=(height, width), mode="bilinear"
        )
        weight = _to_batch(weight, source.shape[0])
    visible_h, visible_w = out.shape[-2] - y, out.shape[-1] - x
    weight = weight[..., :visible_h, :visible_w]
    region = out[..., y : y + height, x : x + width]
    out[..., y : y + height, x : x + width] = (
        weight * source[..., :visible_h, :visible_w] + (1 - weight) * region
    )
    return out


@node(category="image", outputs={"image": Image, "mask": Mask})
def ImagePadForOutpaint(
    ctx: Context,
    image: Image,
    left: int = Input(0, ge=0, le=MAX_SIDE, step=8),
    top: int = Input(0, ge=0, le=MAX_SIDE, step=8),
    right: int = Input(0, ge=0, le=MAX_SIDE, step=8),
    bottom: int = Input(0, ge=0, le=MAX_SIDE, step=8),
    feathering: int = Input(40, ge=0, le=MAX_SIDE),
) -> tuple[Any, Any]:
    """The image on a bigger canvas of mid grey, and the mask of what to paint: 1 on the new
    border, rising from 0 inside the image over `feathering` pixels from each padded side as
    ((feathering - distance) / feathering) squared (ComfyUI's node; no feathering when it is
    0 or more than half the image)."""
    import torch

    batch, channels, height, width = image.shape
    new_h, new_w = height + top + bottom, width + left + right
    _check_size(ctx, new_w, new_h, batch, "left")
    canvas = torch.full((batch, channels, new_h, new_w), 0.5, dtype=torch.float32)
    canvas[:, :, top : top + height, left : left + width] = image
    mask = torch.ones((new_h, new_w), dtype=torch.float32)
    inner = torch.zeros((height, width), dtype=torch.float32)
    if feathering > 0 and feathering * 2 < height and feathering * 2 < width:
        rows = torch.arange(height, dtype=torch.float32).unsqueeze(1)
        cols = torch.arange(width, dtype=torch.float32).unsqueeze(0)
        far_h, far_w = torch.full_like(rows, height), torch.full_like(cols, width)
        distance = torch.minimum(
            torch.minimum(rows if top else far_h, height - rows if bottom else far_h),
            torch.minimum(cols if left else far_w, width - cols if right else far_w),
        )
        rise = (feathering - distance) / feathering
        inner = torch.where(distance < feathering, rise * rise, inner)
    mask[top : top + height, left : left + width] = inner
    return canvas, mask.unsqueeze(0)


NODES = [
    InvertImage,
    InvertMask,
    ImageToMask,
    MaskToImage,
    JoinImageWithAlpha,
    PreviewMask,
    EmptyImage,
    SolidMask,
    ThresholdMask,
    FeatherMask,
    MaskComposite,
    ImageCompositeMasked,
    ImagePadForOutpaint,
]
