"""Mage-Flow's prompt node, as ComfyUI's TextEncodeMageFlowEdit (comfy_extras' Mage nodes):

- `width` / `height` 0: the first image's size (1024 without an image), each axis on its own;
  then floored to a multiple of 16 (at least 16).
- Each image to edit is seen by Qwen3-VL with its long edge cut to 384 pixels (bicubic), and
  with `vae` it is resized (bicubic) to the result's size and encoded: its latent is a
  reference latent of both conditionings (Mage's RoPE lines the reference up with the result
  by position, so they share a size).
- The negative prompt ("" is encoded as " ") sees the same images and references: only the
  instruction differs.
- `latent` is an empty Mage-VAE latent (128 channels at 1/16) of `batch_size` x the result size.
"""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, node
from easel.core.types import Clip, Conditioning, Image, Latent, Vae
from easel.nodes.edit_images import (
    add_references,
    first_image,
    reference_latent,
    require_family_clip,
    rgb,
)
from easel.nodes.model_access import model_errors

IMAGE_INPUTS = tuple(f"image_{i}" for i in range(1, 17))
MULTIPLE = 16
DEFAULT_SIZE = 1024
LATENT_CHANNELS = 128


def result_size(width: int, height: int, first: Any) -> tuple[int, int]:
    """(width, height): 0 takes the first image's (1024 without one), floored to 16."""
    if not width or not height:
        ref_h, ref_w = (
            (first.shape[-2], first.shape[-1]) if first is not None else (DEFAULT_SIZE,) * 2
        )
        width, height = width or int(ref_w), height or int(ref_h)
    w, h = width // MULTIPLE * MULTIPLE, height // MULTIPLE * MULTIPLE
    return max(MULTIPLE, w), max(MULTIPLE, h)


def resized(image: Any, width: int, height: int) -> Any:
    """[B, 3, H, W] resized bicubically (no antialiasing, as ComfyUI's common_upscale)."""
    import torch.nn.functional as F

    if (image.shape[-1], image.shape[-2]) == (width, height):
        return image
    return F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False)


def for_text_encoder(image: Any) -> Any:
    """The image as Qwen3-VL sees it: its long edge cut to 384 pixels, as a PIL image."""
    from easel.models.families.mage_flow import VL_LONG_EDGE
    from easel.models.qwen_text import to_pil

    h, w = int(image.shape[-2]), int(image.shape[-1])
    if max(h, w) > VL_LONG_EDGE:
        scale = VL_LONG_EDGE / max(h, w)
        image = resized(image, max(1, round(w * scale)), max(1, round(h * scale)))
    return to_pil(image)[0]


@node(
    category="conditioning",
    outputs={"positive": Conditioning, "negative": Conditioning, "latent": Latent},
)
def TextEncodeMageFlowEdit(
    ctx: Context,
    clip: Clip,
    prompt: str = Input("", multiline=True),
    negative_prompt: str = Input("", multiline=True),
    width: int = Input(0, ge=0, le=8192, step=16),
    height: int = Input(0, ge=0, le=8192, step=16),
    batch_size: int = Input(1, ge=1, le=4096),
    vae: Vae | None = None,
    image_1: Image | None = None,
    image_2: Image | None = None,
    image_3: Image | None = None,
    image_4: Image | None = None,
    image_5: Image | None = None,
    image_6: Image | None = None,
    image_7: Image | None = None,
    image_8: Image | None = None,
    image_9: Image | None = None,
    image_10: Image | None = None,
    image_11: Image | None = None,
    image_12: Image | None = None,
    image_13: Image | None = None,
    image_14: Image | None = None,
    image_15: Image | None = None,
    image_16: Image | None = None,
) -> Any:
    """Mage-Flow's prompts (ComfyUI's TextEncodeMageFlowEdit): the prompt (an edit instruction
    when images are given) and the negative prompt through Qwen3-VL, and an empty latent of the
    result's size. Images to edit (image_1 ... image_16) are seen by Qwen3-VL and, with `vae`,
    become reference latents at the result's size."""
    import torch

    from easel.models import mage_text

    require_family_clip(clip, "mage-flow", "a Mage-Flow text encoder (TextEncoderLoader type mage)")
    given = dict(zip(IMAGE_INPUTS, (
            image_1, image_2, image_3, image_4, image_5, image_6, image_7, image_8,
            image_9, image_10, image_11, image_12, image_13, image_14, image_15, image_16,
        ), strict=True))
    pictures = []
    for name, image in given.items():
        if image is None:
            continue
        pictures.append(first_image(ctx, rgb(image, name), name).float())
    w, h = result_size(width, height, pictures[0] if pictures else None)
    if pictures and vae is None:
        ctx.warn("no VAE connected: the images to edit are seen by Qwen3-VL only")
    seen = [for_text_encoder(picture) for picture in pictures]
    references = (
        [reference_latent(vae, resized(picture, w, h)) for picture in pictures]
        if vae is not None
        else []
    )
    with model_errors("prompt"):
        positive = mage_text.encode(clip, prompt, seen).conditioning
    with model_errors("negative_prompt"):
        negative = mage_text.encode(clip, negative_prompt or " ", seen).conditioning
    add_references(positive, negative, references)
    samples = torch.zeros(batch_size, LATENT_CHANNELS, h // MULTIPLE, w // MULTIPLE)
    latent = {"samples": samples, "width": w, "height": h}
    return {"positive": positive, "negative": negative, "latent": latent}


NODES = [TextEncodeMageFlowEdit]
