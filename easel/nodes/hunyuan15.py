"""HunyuanVideo 1.5 / Capybara latents and image conditioning, as ComfyUI's nodes make them:

- EmptyHunyuanVideo15Latent: a blank 32-channel latent at 1/16 of the size;
- HunyuanVideo15ImageToVideo: the blank latent, and both prompts conditioned on a start image
  (its latent and a mask, which the transformer sees beside the latent it makes, as
  HunyuanVideo15ImageToVideoPipeline concatenates them) and on its SigLIP tokens
  (CLIPVisionEncode of sigclip_vision_patch14_384).

Easel makes images: `length` (frames) must be 1, as in ComfyUI's Capybara image templates.
"""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import ClipVisionOutput, Conditioning, Image, Latent, Vae
from easel.models.families.hunyuan15 import HUNYUAN15_LATENT
from easel.nodes.model_access import model_errors

MAX_RESOLUTION = 16384
FACTOR = HUNYUAN15_LATENT.factor


def _blank(ctx: Context, width: int, height: int, length: int, batch_size: int) -> Any:
    import torch

    from easel.core.budget import budget_of

    if length != 1:
        raise NodeError(
            f"{length} frames: Easel makes images, so length must be 1 (one frame)", "length"
        )
    problem = budget_of(ctx.services).problem(width, height, batch=batch_size)
    if problem:
        raise NodeError(problem, "batch_size" if batch_size > 1 else "width")
    new_w, new_h = width - width % FACTOR, height - height % FACTOR
    if (new_w, new_h) != (width, height):
        ctx.warn(
            f"{width}x{height} is not a multiple of HunyuanVideo 1.5's latent factor {FACTOR}: "
            f"the latent is {new_w}x{new_h}"
        )
    samples = torch.zeros(batch_size, HUNYUAN15_LATENT.channels, new_h // FACTOR, new_w // FACTOR)
    return {"samples": samples, "width": new_w, "height": new_h}


@node(category="latent", outputs={"latent": Latent})
def EmptyHunyuanVideo15Latent(
    ctx: Context,
    width: int = Input(848, ge=16, le=MAX_RESOLUTION, step=16),
    height: int = Input(480, ge=16, le=MAX_RESOLUTION, step=16),
    length: int = Input(1, ge=1, le=MAX_RESOLUTION),
    batch_size: int = Input(1, ge=1, le=64),
) -> Any:
    """A blank HunyuanVideo 1.5 latent (ComfyUI's EmptyHunyuanVideo15Latent): [batch, 32,
    height / 16, width / 16], one frame. A size that is not a multiple of 16 is rounded down,
    with a warning."""
    return {"latent": _blank(ctx, width, height, length, batch_size)}


def _start_latent(vae: Any, image: Any, width: int, height: int) -> Any:
    """The start image fitted to (width, height) (centre crop, bilinear: ComfyUI's
    common_upscale) and encoded, in its VAE's scaling (as VAEEncode makes it)."""
    import torch

    from easel.nodes.upscale import center_crop, resample

    if tuple(image.shape[-2:]) != (height, width):
        image = resample(center_crop(image, width, height), (height, width), "bilinear")
    module = vae.manager.place(vae.vae)
    param = next(module.parameters())
    with torch.inference_mode():
        encoded = module.encode((image[:1, :3].clamp(0, 1) * 2 - 1).to(param.device, param.dtype))
        latents = encoded.latent_dist.mode()
    return ((latents.float() - vae.shift_factor) * vae.scaling_factor).cpu()


@node(
    category="conditioning",
    outputs={"positive": Conditioning, "negative": Conditioning, "latent": Latent},
)
def HunyuanVideo15ImageToVideo(
    ctx: Context,
    positive: Conditioning,
    negative: Conditioning,
    vae: Vae,
    width: int = Input(848, ge=16, le=MAX_RESOLUTION, step=16),
    height: int = Input(480, ge=16, le=MAX_RESOLUTION, step=16),
    length: int = Input(1, ge=1, le=MAX_RESOLUTION),
    batch_size: int = Input(1, ge=1, le=64),
    start_image: Image | None = None,
    clip_vision_output: ClipVisionOutput | None = None,
) -> Any:
    """Both prompts conditioned on `start_image` (its latent and a mask of ones beside the
    latent being made: the image to keep or edit) and on its SigLIP tokens
    (`clip_vision_output`), with a blank latent of the size, as ComfyUI's
    HunyuanVideo15ImageToVideo makes them. The start image is cropped and resized to the
    latent's size."""
    import torch

    latent = _blank(ctx, width, height, length, batch_size)
    added: dict[str, Any] = {}
    if start_image is not None:
        if getattr(start_image, "ndim", 0) != 4:
            raise NodeError("expected images [B, C, H, W]", "start_image")
        if vae.latent_channels != HUNYUAN15_LATENT.channels:
            raise NodeError(
                f"a VAE of {vae.latent_channels} latent channels: HunyuanVideo 1.5 takes its own "
                "32-channel VAE (hunyuanvideo15_vae)",
                "vae",
            )
        height_px, width_px = (int(n) * FACTOR for n in latent["samples"].shape[-2:])
        with model_errors("vae"):
            encoded = _start_latent(vae, start_image, width_px, height_px)
        mask = torch.ones(1, 1, *encoded.shape[-2:])
        added["concat_latent"] = torch.cat([encoded, mask], dim=1)
    if clip_vision_output is not None:
        tokens = getattr(clip_vision_output, "last_hidden_state", None)
        if tokens is None:
            raise NodeError("this CLIP vision output has no image tokens", "clip_vision_output")
        added["image_embeds"] = tokens.float().cpu()
    return {
        "positive": {**positive, **added},
        "negative": {**negative, **added},
        "latent": latent,
    }


NODES = [EmptyHunyuanVideo15Latent, HunyuanVideo15ImageToVideo]
