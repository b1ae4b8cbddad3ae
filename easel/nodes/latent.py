"""Latent nodes: empty latents, latent upscaling (hires fix) and batch slicing."""

from __future__ import annotations

from typing import Any

from easel.core.budget import budget_of
from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Latent, Vae
from easel.nodes.upscale import target_size

DEFAULT_FACTOR = 8
LATENT_METHODS = ["nearest-exact", "bilinear", "bicubic", "area"]


def _latent_budget(ctx: Context, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    """The pixel budget: at submission linked sizes are not known yet, so they count as the
    smallest they can be; the run checks the real ones."""
    problem = budget_of(ctx.services).problem(
        inputs.get("width", 8), inputs.get("height", 8), batch=inputs.get("batch_size", 1)
    )
    return (
        [("batch_size" if inputs.get("batch_size", 1) > 1 else "width", problem)] if problem else []
    )


@node(category="latent", outputs={"latent": Latent}, check=_latent_budget)
def EmptyLatent(
    ctx: Context,
    width: int = Input(512, ge=8, le=8192, step=8),
    height: int = Input(512, ge=8, le=8192, step=8),
    batch_size: int = Input(1, ge=1, le=64),
    vae: Vae | None = None,
) -> Any:
    """A blank latent for text-to-image. A size that is not a multiple of the VAE's downscale
    factor (the linked VAE's, else 8) is floored with a warning, as ComfyUI does; the sampler
    re-shapes it for its model's latent channels and factor."""
    import torch

    for input_name, problem in _latent_budget(
        ctx, {"width": width, "height": height, "batch_size": batch_size}
    ):
        raise NodeError(problem, input_name)
    factor = vae.scale_factor if vae is not None else DEFAULT_FACTOR
    channels = vae.latent_channels if vae is not None else 4
    for name, value in (("width", width), ("height", height)):
        if value % factor:
            # As ComfyUI's empty latents: sizes computed from an image (edit templates) are
            # rarely aligned, so the latent is floored rather than refused.
            ctx.warn(
                f"{name} {value} is not a multiple of the VAE's downscale factor {factor}: "
                f"the image will be {value - value % factor} pixels"
            )
    samples = torch.zeros(batch_size, channels, height // factor, width // factor)
    return {"samples": samples, "width": width, "height": height}


@node(category="latent", outputs={"latent": Latent})
def LatentUpscale(
    latent: Latent,
    method: str = Input("nearest-exact", choices=LATENT_METHODS),
    scale: float = Input(1.5, gt=0, le=8, step=0.05),
    width: int = Input(0, ge=0, le=8192, step=8),
    height: int = Input(0, ge=0, le=8192, step=8),
) -> Any:
    """Resize latents (for a hires-fix second pass): by `scale`, or to a pixel `width` x
    `height` (0 keeps the aspect ratio from the other side)."""
    import torch.nn.functional as F

    samples = latent["samples"]
    _, _, h, w = samples.shape
    factor = latent["width"] // w if "width" in latent else DEFAULT_FACTOR
    new_h, new_w = target_size(
        h, w, scale, width // factor if width else 0, height // factor if height else 0
    )
    kwargs = {"antialias": True} if method in ("bilinear", "bicubic") else {}
    resized = F.interpolate(samples, size=(new_h, new_w), mode=method, **kwargs)
    out = {k: v for k, v in latent.items() if k not in ("samples", "noise_mask")}
    out["samples"] = resized
    if "width" in latent:
        out["width"], out["height"] = new_w * factor, new_h * factor
    return out


@node(category="latent", outputs={"latent": Latent})
def LatentFromBatch(
    latent: Latent, index: int = Input(0, ge=0, le=4095), length: int = Input(1, ge=1, le=4096)
) -> Any:
    """Pick latents `index` .. `index + length` of a batch."""
    samples = latent["samples"]
    if index >= samples.shape[0]:
        raise NodeError(f"the batch has {samples.shape[0]} latents", "index")
    out = dict(latent)
    out["samples"] = samples[index : index + length].clone()
    if "noise_mask" in latent and latent["noise_mask"].shape[0] == samples.shape[0]:
        out["noise_mask"] = latent["noise_mask"][index : index + length]
    return out


NODES = [EmptyLatent, LatentUpscale, LatentFromBatch]
