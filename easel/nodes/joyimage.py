"""JoyImage Edit's prompt encoder (ComfyUI's TextEncodeJoyImageEdit): the prompt with up to six
reference images seen by Qwen3-VL's vision tower, and (through `vae`) the images' latents as
reference latents the transformer sees beside the image it makes.

Each image is fitted to JoyImage's nearest size bucket (the pipeline's and ComfyUI's list of
about 1024x1024-pixel sizes: the one whose aspect is closest), cropped to that aspect at its
centre and resized bilinearly, as ComfyUI's node does. `base` scales the bucket list (1024:
the model's; smaller values for quick tests and previews), each side rounded to 16 pixels.
"""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Conditioning, Image, Vae
from easel.nodes.edit_images import reference_latent
from easel.nodes.loaders import require
from easel.nodes.model_access import model_errors

IMAGE_INPUTS = tuple(f"image{i}" for i in range(6))
SIDE_MULTIPLE = 16  # the VAE's 8 times the transformer's 2x2 patches


def bucket(height: int, width: int, base: int = 1024) -> tuple[int, int]:
    """(height, width) of the bucket whose aspect is closest to the image's (diffusers'
    find_best_bucket), scaled to `base`."""
    from diffusers.pipelines.joyimage.image_processor import find_best_bucket

    h, w = find_best_bucket(height, width, 1024)
    if base == 1024:
        return h, w

    def scaled(side: int) -> int:
        return max(SIDE_MULTIPLE, round(side * base / 1024 / SIDE_MULTIPLE) * SIDE_MULTIPLE)

    return scaled(h), scaled(w)


def fitted(image: Any, base: int) -> Any:
    """`image` [1, 3, H, W] cropped to its bucket's aspect at the centre and resized
    (bilinear) to the bucket (ComfyUI's common_upscale with crop "center")."""
    from easel.nodes.upscale import center_crop, resample

    height, width = bucket(int(image.shape[-2]), int(image.shape[-1]), base)
    if tuple(image.shape[-2:]) == (height, width):
        return image
    return resample(center_crop(image, width, height), (height, width), "bilinear").clamp(0, 1)


@node(category="conditioning", outputs={"conditioning": Conditioning})
def TextEncodeJoyImageEdit(
    ctx: Context,
    clip: Clip,
    prompt: str = Input("", multiline=True),
    vae: Vae | None = None,
    image0: Image | None = None,
    image1: Image | None = None,
    image2: Image | None = None,
    image3: Image | None = None,
    image4: Image | None = None,
    image5: Image | None = None,
    base: int = Input(1024, ge=64, le=2048, step=64),
) -> Any:
    """JoyImage Edit's prompt (ComfyUI's TextEncodeJoyImageEdit): the images (`image0` ...
    `image5`, each fitted to its size bucket) are shown to Qwen3-VL before the prompt; with
    `vae` their latents become the conditioning's reference latents, in order. Make the
    sampler's latent the size of the fitted image (the references go beside it)."""
    from easel.models import joyimage_text
    from easel.models.qwen_text import to_pil

    require(clip, "text encoder (CLIP)", "clip")
    if not any(getattr(part, "kind", "") == "qwen3vl" for part in clip.parts):
        raise NodeError(
            f"needs JoyImage Edit's Qwen3-VL CLIP (TextEncoderLoader type joyimage); this CLIP "
            f"({clip.name}) has parts {[part.key for part in clip.parts]}",
            "clip",
        )
    given = (image0, image1, image2, image3, image4, image5)
    images, references = [], []
    for name, image in zip(IMAGE_INPUTS, given, strict=True):
        if image is None:
            continue
        if image.shape[1] != 3:
            raise NodeError(f"expects an RGB image, got {image.shape[1]} channels", name)
        if image.shape[0] > 1:
            raise NodeError("JoyImage reference inputs take one image each", name)
        picture = fitted(image, base)
        images.append(picture)
        if vae is not None:
            references.append(reference_latent(vae, picture))
    with model_errors("prompt"):
        pil = [to_pil(picture)[0] for picture in images]
        cond = joyimage_text.encode(clip, prompt, pil)
    if references:
        cond["reference_latents"] = references
    return {"conditioning": cond}


NODES = [TextEncodeJoyImageEdit]
