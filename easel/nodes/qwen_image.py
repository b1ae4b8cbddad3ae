"""Qwen-Image-Edit's prompt encoders (ComfyUI's TextEncodeQwenImageEdit and
TextEncodeQwenImageEditPlus): the prompt with its images seen by Qwen2.5-VL's vision tower, and
the images' latents (through `vae`) as reference latents the transformer sees beside the image
it makes, as QwenImageEditPipeline and QwenImageEditPlusPipeline feed them.

Sizes follow ComfyUI's nodes: Edit resizes the image to about 1024x1024 pixels (area kept,
"area" interpolation) for both; Edit Plus shows the vision tower each image at about 384x384
and encodes it at about 1024x1024, rounded to multiples of 8 (a reference latent of odd size is
padded to the 2x2 patches, as ComfyUI pads it).
"""

from __future__ import annotations

import math
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Conditioning, Image, Vae
from easel.models.families.qwen_image import EDIT_TEMPLATE
from easel.nodes.conditioning import empty_prompt
from easel.nodes.edit_images import reference_latent
from easel.nodes.loaders import require
from easel.nodes.model_access import model_errors

EDIT_AREA = 1024 * 1024  # TextEncodeQwenImageEdit: the image's pixels, for both uses
VISION_AREA = 384 * 384  # TextEncodeQwenImageEditPlus: what the vision tower sees
REFERENCE_AREA = 1024 * 1024  # TextEncodeQwenImageEditPlus: what the VAE encodes
REFERENCE_MULTIPLE = 8


def _scaled(image: Any, area: int, multiple: int = 1) -> Any:
    """`image` ([B, 3, H, W]) resized to about `area` pixels, its aspect kept ("area"
    interpolation, ComfyUI's common_upscale), each side rounded to `multiple`."""
    from easel.nodes.upscale import resample

    height, width = int(image.shape[-2]), int(image.shape[-1])
    scale = math.sqrt(area / (width * height))
    new_w = max(multiple, round(width * scale / multiple) * multiple)
    new_h = max(multiple, round(height * scale / multiple) * multiple)
    if (new_h, new_w) == (height, width):
        return image
    return resample(image, (new_h, new_w), "area")


def _first(ctx: Context, image: Any, input_name: str) -> Any:
    if image.shape[1] != 3:
        raise NodeError(f"expects an RGB image, got {image.shape[1]} channels", input_name)
    if image.shape[0] > 1:
        ctx.warn(f"{input_name}: a batch of {image.shape[0]} images; the first is used")
    return image[:1]


def _encode(
    ctx: Context, clip: Any, prompt: str, images: list[Any], *, numbered: bool
) -> dict[str, Any]:
    from easel.models import qwen_text

    require(clip, "text encoder (CLIP)", "clip")
    if getattr(getattr(clip, "family", None), "name", "") == "longcat-image":
        return _encode_longcat(clip, prompt, images)
    if not any(getattr(part, "kind", "") == "qwen" for part in clip.parts):
        raise NodeError(
            f"needs a Qwen2.5-VL CLIP (TextEncoderLoader type qwen_image); this CLIP "
            f"({clip.name}) has parts {[part.key for part in clip.parts]}",
            "clip",
        )
    with model_errors("prompt"):
        if images:
            pil = [qwen_text.to_pil(image)[0] for image in images]
            cond = qwen_text.encode_edit(clip, prompt, pil, numbered=numbered)
        elif numbered:  # the Plus encoder keeps the Edit template without images
            cond = qwen_text.encode(clip, prompt, template=EDIT_TEMPLATE)
        else:
            cond = qwen_text.encode(clip, prompt)
        uncond = empty_prompt(clip)
    return {**cond, "uncond": uncond}


def _encode_longcat(clip: Any, prompt: str, images: list[Any]) -> dict[str, Any]:
    """A LongCat-Image CLIP in the Edit encoders (ComfyUI's LongCat-Image-Edit template):
    LongCatImageEditPipeline's encoding of the one image (easel.models.longcat_text)."""
    from easel.models import longcat_text

    if len(images) > 1:
        raise NodeError("LongCat-Image-Edit takes one image; connect only image1", "image2")
    with model_errors("prompt"):
        if images:
            cond = longcat_text.encode_edit(clip, prompt, images[0])
        else:
            cond = longcat_text.encode(clip, prompt)
        uncond = empty_prompt(clip)
    return {**cond, "uncond": uncond}


@node(category="conditioning", outputs={"conditioning": Conditioning})
def TextEncodeQwenImageEdit(
    ctx: Context,
    clip: Clip,
    prompt: str = Input("", multiline=True),
    vae: Vae | None = None,
    image: Image | None = None,
) -> Any:
    """Qwen-Image-Edit's prompt (ComfyUI's TextEncodeQwenImageEdit): with `image`, the prompt
    is encoded with the image (about 1024x1024 pixels) in Qwen-Image-Edit's template, and with
    `vae` the image's latent becomes the conditioning's reference latent. Without an image it
    is a plain Qwen-Image prompt."""
    images, references = [], []
    if image is not None:
        scaled = _scaled(_first(ctx, image, "image"), EDIT_AREA)
        images.append(scaled)
        if vae is not None:
            references.append(reference_latent(vae, scaled))
    cond = _encode(ctx, clip, prompt, images, numbered=False)
    if references:
        cond["reference_latents"] = references
    return {"conditioning": cond}


@node(category="conditioning", outputs={"conditioning": Conditioning})
def TextEncodeQwenImageEditPlus(
    ctx: Context,
    clip: Clip,
    prompt: str = Input("", multiline=True),
    vae: Vae | None = None,
    image1: Image | None = None,
    image2: Image | None = None,
    image3: Image | None = None,
) -> Any:
    """Qwen-Image-Edit-2509/2511's prompt (ComfyUI's TextEncodeQwenImageEditPlus): up to three
    images, named "Picture 1: ..." in the prompt and seen by the vision tower at about 384x384;
    with `vae`, each image's latent (about 1024x1024 pixels) becomes a reference latent, in
    order."""
    images, references = [], []
    for name, image in (("image1", image1), ("image2", image2), ("image3", image3)):
        if image is None:
            continue
        first = _first(ctx, image, name)
        images.append(_scaled(first, VISION_AREA))
        if vae is not None:
            reference = _scaled(first, REFERENCE_AREA, REFERENCE_MULTIPLE)
            references.append(reference_latent(vae, reference))
    cond = _encode(ctx, clip, prompt, images, numbered=True)
    if references:
        cond["reference_latents"] = references
    return {"conditioning": cond}


NODES = [TextEncodeQwenImageEdit, TextEncodeQwenImageEditPlus]
