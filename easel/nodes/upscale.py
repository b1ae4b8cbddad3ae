"""Upscaling images: pixel resampling (nearest ... lanczos) and diffusion upscale models."""

from __future__ import annotations

from typing import Any

from easel.core.budget import budget_of
from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Image, UpscaleModel
from easel.nodes.primitives import MAX_SEED

METHODS = ["nearest", "bilinear", "bicubic", "lanczos", "area"]


def target_size(height: int, width: int, scale: float, new_w: int, new_h: int) -> tuple[int, int]:
    """(height, width): explicit sizes win; one of them keeps the aspect ratio."""
    if new_w and new_h:
        return new_h, new_w
    if new_w:
        return max(1, round(height * new_w / width)), new_w
    if new_h:
        return new_h, max(1, round(width * new_h / height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resample(image: Any, size: tuple[int, int], method: str) -> Any:
    """Resize a [B, C, H, W] float image; lanczos through Pillow (float mode, per channel)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if method == "lanczos":
        from PIL import Image as PILImage

        height, width = size
        planes = [
            np.asarray(
                PILImage.fromarray(plane.numpy(), mode="F").resize(
                    (width, height), PILImage.Resampling.LANCZOS
                )
            )
            for sample in image.float()
            for plane in sample
        ]
        stacked = torch.from_numpy(np.stack(planes)).reshape(
            image.shape[0], image.shape[1], height, width
        )
        return stacked.clamp(0, 1)
    mode = "nearest-exact" if method == "nearest" else method
    kwargs = (
        {"antialias": True, "align_corners": False} if method in ("bilinear", "bicubic") else {}
    )
    return F.interpolate(image.float(), size=size, mode=mode, **kwargs).clamp(0, 1)


def _upscale_budget(ctx: Context, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    """Before the run only an explicit width x height is known (the image comes by link)."""
    width, height = inputs.get("width", 0), inputs.get("height", 0)
    problem = budget_of(ctx.services).problem(width, height) if width and height else None
    return [("width", problem)] if problem else []


@node(category="image", outputs={"image": Image}, check=_upscale_budget)
def Upscale(
    ctx: Context,
    image: Image,
    method: str = Input("lanczos", choices=METHODS),
    scale: float = Input(2.0, gt=0.0, le=16.0, step=0.05),
    width: int = Input(0, ge=0, le=16384),
    height: int = Input(0, ge=0, le=16384),
    crop: str = Input("disabled", choices=["disabled", "center"]),
) -> Any:
    """Resize an image by `scale`, or to `width` x `height` (0 keeps the aspect ratio).
    `crop` "center" first crops the image to the new aspect ratio, keeping its middle (when
    both sides are given; ComfyUI's ImageScale)."""
    batch, _, h, w = image.shape
    size = target_size(h, w, scale, width, height)
    problem = budget_of(ctx.services).problem(size[1], size[0], batch=batch)
    if problem:
        raise NodeError(problem, "width" if width or height else "scale")
    if crop == "center" and width and height:
        image = center_crop(image, width, height)
    return resample(image, size, method)


def center_crop(planes: Any, width: int, height: int) -> Any:
    """The middle of `planes` [..., H, W] at the aspect ratio of width x height (ComfyUI's
    common_upscale with crop="center", before it resizes)."""
    old_h, old_w = planes.shape[-2:]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return planes[..., y : old_h - y, x : old_w - x]


@node(category="image", outputs={"image": Image})
def ModelUpscale(
    ctx: Context,
    upscale_model: UpscaleModel,
    image: Image,
    seed: int = Input(0, ge=0, le=MAX_SEED, widget="seed"),
    steps: int = Input(20, ge=1, le=1000),
) -> Any:
    """Upscale by the model's factor with its diffusion super-resolution UNet."""
    from easel.models.upscale_models import SpandrelUpscaler
    from easel.models.upscaler import upscale_with_model

    if isinstance(upscale_model, SpandrelUpscaler):
        raise NodeError(
            f"{upscale_model.name} is an {upscale_model.architecture} model, not a "
            "diffusion upscaler: run it with ImageUpscaleWithModel",
            "upscale_model",
        )

    def report(step: int, total: int) -> None:
        ctx.progress(step, total)

    try:
        return upscale_with_model(upscale_model, image, seed=seed, steps=steps, callback=report)
    except ValueError as exc:
        raise NodeError(str(exc), "image") from exc


NODES = [Upscale, ModelUpscale]
