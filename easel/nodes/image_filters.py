"""Image and mask filters of ComfyUI's templates, on Easel's [B, C, H, W] images and
[B, H, W] masks: GrowMask (comfy_extras/nodes_mask.py), ImageBlur and ImageBlend
(comfy_extras/nodes_post_processing.py), each as its ComfyUI node computes it."""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Image, Mask

BLEND_MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]
MAX_GROW = 16384


def _step(mask: Any, tapered: bool, grow: bool) -> Any:
    """One grey dilation (erosion) over the 3x3 square, or the cross when `tapered`; the
    border repeats the edge (scipy.ndimage's default "reflect" mode, for a 3x3 footprint)."""
    import torch
    import torch.nn.functional as F

    height, width = mask.shape[-2:]
    padded = F.pad(mask.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    offsets = [(dy, dx) for dy in range(3) for dx in range(3)]
    if tapered:
        offsets = [(dy, dx) for dy, dx in offsets if dy == 1 or dx == 1]
    shifted = torch.stack([padded[:, dy : dy + height, dx : dx + width] for dy, dx in offsets])
    return shifted.amax(0) if grow else shifted.amin(0)


@node(category="mask", outputs={"mask": Mask})
def GrowMask(
    mask: Mask,
    expand: int = Input(0, ge=-MAX_GROW, le=MAX_GROW),
    tapered_corners: bool = True,
) -> Any:
    """The mask grown by `expand` pixels (shrunk when negative): `expand` grey dilations
    (erosions) over a 3x3 square, or a cross when `tapered_corners` (ComfyUI's GrowMask)."""
    out = mask.reshape(-1, *mask.shape[-2:]).float()
    # After height + width steps the result no longer changes: stop there.
    steps = min(abs(expand), out.shape[-2] + out.shape[-1])
    for _ in range(steps):
        out = _step(out, tapered_corners, expand > 0)
    return out if steps else out.clone()


def _comfy_gaussian(size: int, sigma: float) -> Any:
    """ComfyUI's blur kernel: a Gaussian of `sigma` over [-1, 1] (not over pixels), summing
    to 1."""
    import torch

    axis = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    kernel = torch.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


@node(category="image", outputs={"image": Image})
def BlurImage(
    image: Image,
    blur_radius: int = Input(1, ge=0, le=31),
    sigma: float = Input(1.0, ge=0.1, le=10.0, step=0.1),
) -> Any:
    """A Gaussian blur over (2 x blur_radius + 1)^2 pixels, edges mirrored; `sigma` is
    relative to the kernel's half-width (ComfyUI's ImageBlur, the same kernel)."""
    import kornia

    if blur_radius == 0:
        return image
    if blur_radius >= min(image.shape[-2:]):
        raise NodeError(
            f"the image is {image.shape[-1]} x {image.shape[-2]}: the radius must be smaller "
            "than both sides",
            "blur_radius",
        )
    kernel = _comfy_gaussian(2 * blur_radius + 1, sigma).to(image.device, image.dtype)
    return kornia.filters.filter2d(image, kernel[None], border_type="reflect")


def _soft_light_g(x: Any) -> Any:
    import torch

    return torch.where(x <= 0.25, ((16 * x - 12) * x + 4) * x, torch.sqrt(x))


def _blend(a: Any, b: Any, mode: str) -> Any:
    import torch

    if mode == "normal":
        return b
    if mode == "multiply":
        return a * b
    if mode == "screen":
        return 1 - (1 - a) * (1 - b)
    if mode == "overlay":
        return torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    if mode == "soft_light":
        return torch.where(
            b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (_soft_light_g(a) - a)
        )
    return a - b  # difference, as ComfyUI computes it (clamped below)


@node(category="image", outputs={"image": Image})
def BlendImages(
    image1: Image,
    image2: Image,
    blend_factor: float = Input(0.5, ge=0.0, le=1.0, step=0.01),
    blend_mode: str = Input("normal", choices=BLEND_MODES),
) -> Any:
    """`image2` blended over `image1` with `blend_mode`, mixed in by `blend_factor`, clamped to
    0..1; `image2` is resized (bicubic, centre crop) to `image1`'s size and given its channel
    count; `image1`'s alpha is kept (ComfyUI's ImageBlend)."""
    import torch

    from easel.nodes.upscale import center_crop, resample

    if image1.shape[0] != image2.shape[0] and 1 not in (image1.shape[0], image2.shape[0]):
        raise NodeError(
            f"image1 has {image1.shape[0]} images and image2 {image2.shape[0]}: the batches "
            "must match (or one be a single image)",
            "image2",
        )
    channels = image1.shape[1]
    if image2.shape[1] > channels:
        image2 = image2[:, :channels]
    elif image2.shape[1] < channels:  # an opaque alpha for an RGB image over RGBA
        image2 = torch.cat([image2, torch.ones_like(image2[:, :1])], dim=1)
    image2 = image2.to(image1.device, image1.dtype)
    height, width = image1.shape[-2:]
    if image2.shape[-2:] != image1.shape[-2:]:
        image2 = resample(center_crop(image2, width, height), (height, width), "bicubic")
    blended = image1 * (1 - blend_factor) + _blend(image1, image2, blend_mode) * blend_factor
    blended = blended.clamp(0, 1)
    if channels == 4:  # alpha is transparency, not colour
        blended[:, 3] = image1[:, 3]
    return blended


NODES = [GrowMask, BlurImage, BlendImages]
