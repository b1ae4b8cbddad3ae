"""Mask and channel utilities that ComfyUI's templates use (comfy_extras/nodes_mask.py,
nodes_compositing.py, ImageInvert and MaskPreview of nodes.py), on Easel's [B, C, H, W] images
and [B, H, W] masks."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Image, Mask

CHANNELS = ["red", "green", "blue", "alpha"]


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
        raise NodeError(f"the image has {image.shape[1]} channels, no {channel} channel",
                        "channel")
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


@node(category="mask", outputs={}, output_node=True)
def PreviewMask(ctx: Context, mask: Mask) -> dict[str, Any]:
    """Show a mask as a grey image, without keeping it (ComfyUI's MaskPreview): written to
    the output folder's preview/ subfolder."""
    from easel.nodes.image_io import PREVIEW_FOLDER, save_pictures

    picture = mask.reshape(-1, 1, *mask.shape[-2:]).expand(-1, 3, -1, -1)
    return {"ui": {"files": save_pictures(ctx, picture, f"{PREVIEW_FOLDER}/mask")}}


NODES = [InvertImage, InvertMask, ImageToMask, MaskToImage, JoinImageWithAlpha, PreviewMask]
