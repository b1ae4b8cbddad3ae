"""Image utilities that ComfyUI's templates use: size, resizing, stitching, batching, Canny.

Each follows the ComfyUI node it stands for (comfy_extras/nodes_images.py,
nodes_post_processing.py, nodes_canny.py) on Easel's [B, C, H, W] images and [B, H, W]
masks. Resizing goes through `easel.nodes.upscale.resample`, the same resampler as
`Upscale`, so ComfyUI's ImageScale and these nodes agree with each other in Easel.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from easel.core.budget import budget_of
from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import ANY, Image, Socket
from easel.nodes.upscale import METHODS, resample

AnyValue = Annotated[Any, Socket(ANY)]
MAX_SIDE = 16384
RESIZE_TYPES = [
    "scale dimensions",
    "scale by multiplier",
    "scale longer dimension",
    "scale shorter dimension",
    "scale width",
    "scale height",
    "scale total pixels",
    "match size",
    "scale to multiple",
]
# ComfyUI names nearest-neighbour "nearest-exact"; Easel's resampler calls it "nearest".
SCALE_METHODS = {
    "nearest-exact": "nearest",
    "bilinear": "bilinear",
    "area": "area",
    "bicubic": "bicubic",
    "lanczos": "lanczos",
}
# ComfyUI's ResolutionSelector: (width, height) proportions.
ASPECT_RATIOS = {
    "1:1 (Square)": (1, 1),
    "3:2 (Photo)": (3, 2),
    "4:3 (Standard)": (4, 3),
    "16:9 (Widescreen)": (16, 9),
    "21:9 (Ultrawide)": (21, 9),
    "2:3 (Portrait Photo)": (2, 3),
    "3:4 (Portrait Standard)": (3, 4),
    "9:16 (Portrait Widescreen)": (9, 16),
}
# The resolutions Flux Kontext was trained at (ComfyUI's FluxKontextImageScale).
KONTEXT_RESOLUTIONS = [
    (672, 1568),
    (688, 1504),
    (720, 1456),
    (752, 1392),
    (800, 1328),
    (832, 1248),
    (880, 1184),
    (944, 1104),
    (1024, 1024),
    (1104, 944),
    (1184, 880),
    (1248, 832),
    (1328, 800),
    (1392, 752),
    (1456, 720),
    (1504, 688),
    (1568, 672),
]
SPACING_COLOURS = {
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
}


def _check_budget(ctx: Context, width: int, height: int, batch: int, input_name: str) -> None:
    problem = budget_of(ctx.services).problem(width, height, batch=batch)
    if problem:
        raise NodeError(problem, input_name)


def _resize(ctx: Context, image: Any, width: int, height: int, method: str, input_name: str) -> Any:
    width, height = max(1, int(width)), max(1, int(height))
    _check_budget(ctx, width, height, image.shape[0], input_name)
    return resample(image, (height, width), method)


@node(category="image", outputs={"width": int, "height": int, "batch_size": int})
def ImageSize(image: Image) -> tuple[int, int, int]:
    """The width, height and batch size of an image (ComfyUI's GetImageSize)."""
    return int(image.shape[-1]), int(image.shape[-2]), int(image.shape[0])


@node(category="image", outputs={"image": Image})
def ScaleToTotalPixels(
    ctx: Context,
    image: Image,
    method: str = Input("nearest", choices=METHODS),
    megapixels: float = Input(1.0, ge=0.01, le=16.0, step=0.01),
    resolution_steps: int = Input(1, ge=1, le=256),
) -> Any:
    """Resize to about `megapixels` x 1024 x 1024 pixels, keeping the aspect ratio; each side a
    multiple of `resolution_steps` (ComfyUI's ImageScaleToTotalPixels)."""
    height, width = image.shape[-2:]
    factor = math.sqrt(megapixels * 1024 * 1024 / (width * height))
    new_width = round(width * factor / resolution_steps) * resolution_steps
    new_height = round(height * factor / resolution_steps) * resolution_steps
    return _resize(ctx, image, new_width, new_height, method, "megapixels")


def _as_planes(value: Any, input_name: str = "input") -> tuple[Any, bool]:
    """[B, C, H, W] for an image or a mask, and whether it was a mask."""
    if getattr(value, "ndim", 0) == 3:
        return value.unsqueeze(1), True
    if getattr(value, "ndim", 0) == 4:
        return value, False
    raise NodeError(
        f"expected an IMAGE [B, C, H, W] or a MASK [B, H, W], got shape "
        f"{tuple(getattr(value, 'shape', ()))}",
        input_name,
    )


def _center_crop_resize(
    ctx: Context, planes: Any, width: int, height: int, method: str, crop: str, input_name: str
) -> Any:
    """ComfyUI's common_upscale with crop="center": crop to the target aspect, then resize."""
    if crop == "center":
        from easel.nodes.upscale import center_crop

        planes = center_crop(planes, width, height)
    return _resize(ctx, planes, width, height, method, input_name)


@node(category="image", outputs={"resized": AnyValue})
def ResizeImageMask(
    ctx: Context,
    input: AnyValue,
    resize_type: str = Input("scale dimensions", choices=RESIZE_TYPES),
    width: int = Input(512, ge=0, le=MAX_SIDE),
    height: int = Input(512, ge=0, le=MAX_SIDE),
    crop: str = Input("center", choices=["disabled", "center"]),
    multiplier: float = Input(1.0, ge=0.01, le=8.0, step=0.01),
    longer_size: int = Input(512, ge=0, le=MAX_SIDE),
    shorter_size: int = Input(512, ge=0, le=MAX_SIDE),
    megapixels: float = Input(1.0, ge=0.01, le=16.0, step=0.01),
    multiple: int = Input(8, ge=1, le=MAX_SIDE),
    match: AnyValue = None,
    scale_method: str = Input("area", choices=METHODS),
) -> Any:
    """Resize an image or a mask (ComfyUI's ResizeImageMaskNode): to width x height (0 keeps
    the aspect ratio; `crop` "center" crops to the new aspect first), by a multiplier, the
    longer or shorter side to a size, to a width or a height, to a number of megapixels, to
    the size of `match`, or down to the nearest multiple of `multiple` (cropping the centre).
    Only the inputs of the chosen `resize_type` are read."""
    planes, is_mask = _as_planes(input)
    old_h, old_w = (int(v) for v in planes.shape[-2:])
    if resize_type == "scale by multiplier":
        out = _resize(
            ctx,
            planes,
            round(old_w * multiplier),
            round(old_h * multiplier),
            scale_method,
            "multiplier",
        )
    elif resize_type in ("scale dimensions", "scale width", "scale height"):
        new_w = width if resize_type != "scale height" else 0
        new_h = height if resize_type != "scale width" else 0
        if not new_w and not new_h:
            return input
        new_w = new_w or max(1, round(old_w * new_h / old_h))
        new_h = new_h or max(1, round(old_h * new_w / old_w))
        out = _center_crop_resize(
            ctx,
            planes,
            new_w,
            new_h,
            scale_method,
            crop if resize_type == "scale dimensions" else "disabled",
            "width",
        )
    elif resize_type in ("scale longer dimension", "scale shorter dimension"):
        size = longer_size if resize_type == "scale longer dimension" else shorter_size
        wide = old_w > old_h if resize_type == "scale longer dimension" else old_w < old_h
        if old_w == old_h:
            new_w = new_h = size
        elif wide:
            new_w, new_h = size, round(old_h / old_w * size)
        else:
            new_w, new_h = round(old_w / old_h * size), size
        out = _resize(
            ctx,
            planes,
            new_w,
            new_h,
            scale_method,
            "longer_size" if resize_type == "scale longer dimension" else "shorter_size",
        )
    elif resize_type == "scale total pixels":
        factor = math.sqrt(int(megapixels * 1024 * 1024) / (old_w * old_h))
        out = _resize(
            ctx, planes, round(old_w * factor), round(old_h * factor), scale_method, "megapixels"
        )
    elif resize_type == "match size":
        if match is None:
            raise NodeError(
                "resize_type 'match size' needs an image or mask linked to `match`", "match"
            )
        reference, _ = _as_planes(match, "match")
        out = _center_crop_resize(
            ctx,
            planes,
            int(reference.shape[-1]),
            int(reference.shape[-2]),
            scale_method,
            crop,
            "match",
        )
    else:  # scale to multiple: cover the largest multiple-sized box, crop the centre
        target_w, target_h = (old_w // multiple) * multiple, (old_h // multiple) * multiple
        if multiple <= 1 or 0 in (target_w, target_h) or (target_w, target_h) == (old_w, old_h):
            return input
        if target_w / old_w >= target_h / old_h:
            scaled_w, scaled_h = target_w, max(target_h, math.ceil(old_h * target_w / old_w))
        else:
            scaled_w, scaled_h = max(target_w, math.ceil(old_w * target_h / old_h)), target_h
        out = _resize(ctx, planes, scaled_w, scaled_h, scale_method, "multiple")
        x0, y0 = (scaled_w - target_w) // 2, (scaled_h - target_h) // 2
        out = out[..., y0 : y0 + target_h, x0 : x0 + target_w]
    return out.squeeze(1) if is_mask else out


def _with_channels(image: Any, channels: int) -> Any:
    """Pad an image with opaque (1.0) channels, as ComfyUI adds alpha."""
    import torch

    if image.shape[1] >= channels:
        return image
    pad = torch.ones(image.shape[0], channels - image.shape[1], *image.shape[2:], dtype=image.dtype)
    return torch.cat([image, pad], dim=1)


@node(category="image", outputs={"image": Image})
def ImageStitch(
    ctx: Context,
    image1: Image,
    image2: Image | None = None,
    direction: str = Input("right", choices=["right", "down", "left", "up"]),
    match_image_size: bool = True,
    spacing_width: int = Input(0, ge=0, le=1024, step=2),
    spacing_color: str = Input("white", choices=list(SPACING_COLOURS)),
) -> Any:
    """Put image2 beside image1 (right, down, left or up), with optional spacing between;
    `match_image_size` resizes image2 (lanczos) to image1's height (or width), otherwise the
    smaller one is centred on padding of the spacing colour. Without image2, image1 is
    returned (ComfyUI's ImageStitch)."""
    import torch
    import torch.nn.functional as F

    if image2 is None:
        return image1
    batch = max(image1.shape[0], image2.shape[0])
    image1 = torch.cat([image1, image1[-1:].repeat(batch - image1.shape[0], 1, 1, 1)])
    image2 = torch.cat([image2, image2[-1:].repeat(batch - image2.shape[0], 1, 1, 1)])
    horizontal = direction in ("left", "right")
    colour = SPACING_COLOURS[spacing_color]
    if match_image_size:
        h1, w1 = image1.shape[-2:]
        aspect = image2.shape[-1] / image2.shape[-2]
        size = (int(h1), int(h1 * aspect)) if horizontal else (int(w1 / aspect), int(w1))
        _check_budget(ctx, size[1], size[0], batch, "image2")
        image2 = resample(image2, size, "lanczos")
    else:
        # ComfyUI pads with the spacing colour's grey level (black for red, green, blue).
        fill = colour[0] if len(set(colour)) == 1 else 0.0
        axis = -2 if horizontal else -1
        target = max(image1.shape[axis], image2.shape[axis])

        def pad(image: Any) -> Any:
            missing = target - image.shape[axis]
            before, after = missing // 2, missing - missing // 2
            sides = (0, 0, before, after) if horizontal else (before, after)
            return F.pad(image, sides, value=fill) if missing else image

        image1, image2 = pad(image1), pad(image2)
    channels = max(image1.shape[1], image2.shape[1])
    image1, image2 = _with_channels(image1, channels), _with_channels(image2, channels)
    parts = [image2, image1] if direction in ("left", "up") else [image1, image2]
    if spacing_width > 0:
        spacing_width += spacing_width % 2
        if horizontal:
            shape = (batch, channels, max(image1.shape[-2], image2.shape[-2]), spacing_width)
        else:
            shape = (batch, channels, spacing_width, max(image1.shape[-1], image2.shape[-1]))
        spacer = torch.zeros(shape, dtype=image1.dtype)
        for index, value in enumerate(colour[:channels]):
            spacer[:, index] = value
        if channels == 4:
            spacer[:, 3] = 1.0
        parts.insert(1, spacer)
    out = torch.cat(parts, dim=-1 if horizontal else -2)
    _check_budget(ctx, int(out.shape[-1]), int(out.shape[-2]), batch, "image2")
    return out


@node(category="image", outputs={"image": Image})
def Canny(
    image: Image,
    low_threshold: float = Input(0.4, ge=0.01, le=0.99, step=0.01),
    high_threshold: float = Input(0.8, ge=0.01, le=0.99, step=0.01),
) -> Any:
    """Canny edges as a white-on-black RGB image (a ControlNet hint): kornia's
    `filters.canny`, the function ComfyUI's Canny node calls, so edges match ComfyUI's."""
    try:
        from kornia.filters import canny
    except ImportError as exc:  # a broken install: kornia is a dependency
        raise NodeError(f"Canny needs kornia ({exc}); reinstall easel") from exc
    if low_threshold > high_threshold:
        raise NodeError(
            f"low_threshold {low_threshold} is above high_threshold {high_threshold}",
            "low_threshold",
        )
    _, edges = canny(image[:, :3].float(), low_threshold, high_threshold)
    return edges.repeat(1, 3, 1, 1)


@node(category="image", outputs={"image": Image})
def BatchImages(
    ctx: Context,
    image0: Image | None = None,
    image1: Image | None = None,
    image2: Image | None = None,
    image3: Image | None = None,
    image4: Image | None = None,
    image5: Image | None = None,
    image6: Image | None = None,
    image7: Image | None = None,
    image8: Image | None = None,
    image9: Image | None = None,
    image10: Image | None = None,
    image11: Image | None = None,
    image12: Image | None = None,
    image13: Image | None = None,
    image14: Image | None = None,
    image15: Image | None = None,
) -> Any:
    """One batch of the linked images in input order; images of another size are resized to
    the first one's (bilinear, centre crop) and RGB ones get an opaque alpha when another has
    one (ComfyUI's BatchImagesNode)."""
    import torch

    images = [
        image
        for image in (
            image0,
            image1,
            image2,
            image3,
            image4,
            image5,
            image6,
            image7,
            image8,
            image9,
            image10,
            image11,
            image12,
            image13,
            image14,
            image15,
        )
        if image is not None
    ]
    if not images:
        raise NodeError("link at least one image", "image0")
    channels = max(int(image.shape[1]) for image in images)
    images = [_with_channels(image, channels) for image in images]
    height, width = (int(v) for v in images[0].shape[-2:])
    total = sum(int(image.shape[0]) for image in images)
    _check_budget(ctx, width, height, total, "image0")
    same = [
        image
        if tuple(image.shape[-2:]) == (height, width)
        else _center_crop_resize(ctx, image, width, height, "bilinear", "center", "image0")
        for image in images
    ]
    return torch.cat(same, dim=0)


@node(category="image", outputs={"width": int, "height": int})
def ResolutionSelector(
    aspect_ratio: str = Input("1:1 (Square)", choices=list(ASPECT_RATIOS)),
    megapixels: float = Input(1.0, ge=0.1, le=16.0, step=0.1),
    multiple: int = Input(8, ge=8, le=128, step=4),
) -> tuple[int, int]:
    """A width and height of that aspect ratio and about `megapixels` x 1024 x 1024 pixels,
    each a multiple of `multiple` (ComfyUI's ResolutionSelector)."""
    ratio_w, ratio_h = ASPECT_RATIOS[aspect_ratio]
    scale = math.sqrt(megapixels * 1024 * 1024 / (ratio_w * ratio_h))
    return (
        round(ratio_w * scale / multiple) * multiple,
        round(ratio_h * scale / multiple) * multiple,
    )


@node(category="image", outputs={}, output_node=True)
def CompareImages(
    ctx: Context, image_a: Image | None = None, image_b: Image | None = None
) -> dict[str, Any]:
    """Show two images (or batches) for comparison, without keeping them: written to the
    output folder's preview/ subfolder, listed as `a_images` and `b_images` in the run's
    results (ComfyUI's ImageCompare)."""
    from easel.nodes.image_io import PREVIEW_FOLDER, save_pictures

    return {
        "ui": {
            "a_images": save_pictures(ctx, image_a, f"{PREVIEW_FOLDER}/compare_a")
            if image_a is not None
            else [],
            "b_images": save_pictures(ctx, image_b, f"{PREVIEW_FOLDER}/compare_b")
            if image_b is not None
            else [],
        }
    }


@node(category="image", outputs={"image": Image})
def FluxKontextImageScale(ctx: Context, image: Image) -> Any:
    """Resize (lanczos, centre crop) to the Flux Kontext resolution whose aspect ratio is
    nearest the image's (ComfyUI's FluxKontextImageScale)."""
    height, width = (int(v) for v in image.shape[-2:])
    aspect = width / height
    _, new_w, new_h = min((abs(aspect - w / h), w, h) for w, h in KONTEXT_RESOLUTIONS)
    return _center_crop_resize(ctx, image, new_w, new_h, "lanczos", "center", "image")


NODES = [
    ImageSize,
    ScaleToTotalPixels,
    ResizeImageMask,
    ImageStitch,
    Canny,
    BatchImages,
    ResolutionSelector,
    CompareImages,
    FluxKontextImageScale,
]
