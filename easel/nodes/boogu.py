"""Boogu-Image's edit prompt node, as ComfyUI's TextEncodeBooguEdit (comfy_extras/nodes_boogu.py):

- each image to edit (image_1 ... image_16, in order) is seen by Qwen3-VL scaled (area) to
  384 x 384 pixels' worth, and with `vae` it is scaled (area) to 1024 x 1024 pixels' worth,
  each side a multiple of 16, and encoded: its latent is a reference latent of both
  conditionings (so it cancels under guidance and keeps the image's identity);
- the positive is the prompt with the images' vision tokens (Boogu's describe system turn); the
  negative is the negative prompt alone (the empty one in the describe system turn, else the
  text-to-image one), with the same reference latents.
"""

from __future__ import annotations

import math
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, node
from easel.core.types import Clip, Conditioning, Image, Vae
from easel.nodes.edit_images import add_references, reference_latent, require_family_clip, rgb
from easel.nodes.model_access import model_errors
from easel.nodes.upscale import resample

IMAGE_INPUTS = tuple(f"image_{i}" for i in range(1, 17))


def scaled_to_area(image: Any, pixels: int, multiple: int = 1) -> Any:
    """[B, 3, H, W] scaled ("area", ComfyUI's common_upscale) to about `pixels`, keeping the
    aspect ratio, each side rounded to a multiple of `multiple`."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    scale = math.sqrt(pixels / (width * height))
    w = max(multiple, round(width * scale / multiple) * multiple)
    h = max(multiple, round(height * scale / multiple) * multiple)
    return image if (w, h) == (width, height) else resample(image, (h, w), "area")


@node(category="conditioning", outputs={"positive": Conditioning, "negative": Conditioning})
def TextEncodeBooguEdit(
    ctx: Context,
    clip: Clip,
    prompt: str = Input("", multiline=True),
    negative_prompt: str = Input("", multiline=True),
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
    """Boogu-Image's edit prompts (ComfyUI's TextEncodeBooguEdit): the prompt with the images
    to edit seen by Qwen3-VL, the negative prompt without them, and (with `vae`) the images'
    latents as reference latents of both."""
    from easel.models import boogu_text
    from easel.models.families.boogu import REFERENCE_PIXELS, VL_PIXELS
    from easel.models.qwen_text import to_pil

    require_family_clip(clip, "boogu", "Boogu's text encoder (TextEncoderLoader type boogu)")
    images = (
        image_1, image_2, image_3, image_4, image_5, image_6, image_7, image_8,
        image_9, image_10, image_11, image_12, image_13, image_14, image_15, image_16,
    )  # fmt: skip
    seen, references = [], []
    for name, image in zip(IMAGE_INPUTS, images, strict=True):
        if image is None:
            continue
        picture = rgb(image, name).float()
        seen.extend(to_pil(scaled_to_area(picture, VL_PIXELS)))
        if vae is not None:
            references.append(reference_latent(vae, scaled_to_area(picture, REFERENCE_PIXELS, 16)))
    if seen and vae is None:
        ctx.warn("no VAE connected: the images to edit are seen by Qwen3-VL only")
    with model_errors("prompt"):
        positive = boogu_text.encode(clip, prompt, seen).conditioning
    with model_errors("negative_prompt"):
        negative = boogu_text.encode(clip, negative_prompt).conditioning
    add_references(positive, negative, references)
    return {"positive": positive, "negative": negative}


NODES = [TextEncodeBooguEdit]
