"""Qwen-Image 2.1's nodes, as ComfyUI's TextEncodeQwenImage21 and QwenImage21Cache.

TextEncodeQwenImage21 encodes the prompt and the negative prompt through Qwen3-VL in
QwenImage21Pipeline's template and gives, besides both conditionings, an empty latent of the
size to sample at (64 channels at 1/16). Reference images (`image_1` ... `image_16`, ComfyUI's
"images" group), in order, are resized to about `resolution` x `resolution` pixels at
multiples of 32, their aspect kept (0: their own size rounded to 32), with Lanczos on 8-bit
pixels as the pipeline resizes them; the text encoder sees them (both prompts) and with `vae`
their latents become the conditionings' reference latents. Without `vae` the images are
context only: their hidden states stay in the text (ComfyUI's `keep_vision`). The latent is
then the first image's size.

QwenImage21Cache sets where the transformer's prefix cache (the text tokens' keys and values,
the same at every step) lives. Easel keeps it on the compute device for "auto", "gpu" and
"cpu" (the values are the same; only ComfyUI's placement differs) and recomputes it at every
step for "off". Its storage precision "default" is lossless; ComfyUI's int8 / int4 storage is
lossy and Easel has no equivalent: refused, naming the input.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Conditioning, Image, Latent, Model, Vae
from easel.nodes.edit_images import add_references, first_image, reference_latent
from easel.nodes.loaders import require
from easel.nodes.model_access import model_errors

IMAGE_INPUTS = tuple(f"image_{i}" for i in range(1, 17))
CACHE_DEVICES = ("auto", "gpu", "cpu", "off")
CACHE_DTYPES = ("default", "int8", "int4")
LATENT_FACTOR = 16
LATENT_CHANNELS = 64


def _encode(clip: Any, text: str, images: list[Any], input_name: str) -> dict[str, Any]:
    from easel.models import qwen21_text

    with model_errors(input_name):
        return qwen21_text.encode(clip, text, images)


def reference_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """ComfyUI's TextEncodeQwenImage21 sizes: about resolution^2 pixels, the aspect kept, each
    side a multiple of 32 (0: the image's own size rounded to 32); at least 32."""
    if resolution > 0:
        ratio = width / height
        new_w = round(math.sqrt(resolution * resolution * ratio) / 32) * 32
        new_h = round(math.sqrt(resolution * resolution / ratio) / 32) * 32
    else:
        new_w, new_h = round(width / 32) * 32, round(height / 32) * 32
    return max(32, new_w), max(32, new_h)


def _picture(image: Any, size: tuple[int, int]) -> Any:
    """The image's first item as an 8-bit RGB PIL image, Lanczos-resized to `size` (as the
    pipeline's VaeImageProcessor resizes)."""
    from PIL import Image as PILImage

    from easel.models.qwen_text import to_pil

    picture = to_pil(image[:1, :3])[0]
    if picture.size != size:
        picture = picture.resize(size, resample=PILImage.Resampling.LANCZOS)
    return picture


def _reference(vae: Any, picture: Any) -> Any:
    """The picture's latent (normalised, as VAEEncode makes it) [1, 64, h/16, w/16]."""
    import numpy as np
    import torch

    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)
    return reference_latent(vae, pixels.permute(2, 0, 1)[None])


@node(
    category="conditioning",
    outputs={"positive": Conditioning, "negative": Conditioning, "latent": Latent},
)
def TextEncodeQwenImage21(
    ctx: Context,
    clip: Clip,
    prompt: str = Input("", multiline=True),
    negative_prompt: str = Input("", multiline=True),
    vae: Vae | None = None,
    resolution: int = Input(1024, ge=0, le=4096, step=32),
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
    """Qwen-Image 2.1's prompts (ComfyUI's TextEncodeQwenImage21): the prompt and the negative
    prompt through Qwen3-VL in QwenImage21Pipeline's template (an empty one as " "), and an
    empty latent of `resolution` x `resolution` pixels (1024 when 0), or of the first reference
    image's size. Reference images are seen by the text encoder and, with `vae`, become
    reference latents."""
    import torch

    require(clip, "text encoder (CLIP)", "clip")
    if not any(getattr(part, "kind", "") == "qwen3vl" for part in clip.parts):
        raise NodeError(
            f"needs Qwen-Image 2.1's Qwen3-VL text encoder (TextEncoderLoader type qwen_image "
            f"with a qwen3vl file); this CLIP ({clip.name}) has parts "
            f"{[part.key for part in clip.parts]}",
            "clip",
        )
    images = {
        "image_1": image_1, "image_2": image_2, "image_3": image_3, "image_4": image_4,
        "image_5": image_5, "image_6": image_6, "image_7": image_7, "image_8": image_8,
        "image_9": image_9, "image_10": image_10, "image_11": image_11, "image_12": image_12,
        "image_13": image_13, "image_14": image_14, "image_15": image_15, "image_16": image_16,
    }  # fmt: skip
    pictures, references = [], []
    for name, image in images.items():
        if image is None:
            continue
        image = first_image(ctx, image, name)
        size = reference_size(int(image.shape[-1]), int(image.shape[-2]), resolution)
        picture = _picture(image, size)
        pictures.append(picture)
        if vae is not None:
            references.append(_reference(vae, picture))
    positive = _encode(clip, prompt, pictures, "prompt")
    negative = _encode(clip, negative_prompt, pictures, "negative_prompt")
    add_references(positive, negative, references)
    if pictures and not references:  # no vae: the images' hidden states stay in the text as
        # context (ComfyUI's keep_vision); no latents fill their slots
        for cond in (positive, negative):
            cond["image_pad"] = torch.zeros_like(cond["image_pad"])
    width = height = resolution or 1024
    if pictures:
        width, height = pictures[0].size
    samples = torch.zeros(1, LATENT_CHANNELS, height // LATENT_FACTOR, width // LATENT_FACTOR)
    latent = {"samples": samples, "width": width, "height": height}
    return {"positive": positive, "negative": negative, "latent": latent}


@node(category="model", outputs={"model": Model})
def QwenImage21Cache(
    ctx: Context,
    model: Model,
    device: str = Input("auto", choices=CACHE_DEVICES),
    dtype: str = Input("default", choices=CACHE_DTYPES),
) -> Any:
    """The prefix cache of a Qwen-Image 2.1 model (ComfyUI's QwenImage21Cache): "off"
    recomputes the text tokens' keys and values at every step; "auto", "gpu" and "cpu" cache
    them after the first step (kept on the compute device in Easel; the result is the same).
    Storage precision: "default" (lossless) only."""
    require(model, "model", "model")
    family: Any = getattr(model, "family", None)
    if not hasattr(family, "kv_cache"):
        label = getattr(family, "label", "unknown")
        raise NodeError(f"needs a Qwen-Image 2.1 model; this one is {label}", "model")
    if dtype != "default":
        raise NodeError(
            f"{dtype} cache storage is lossy quantisation, which Easel does not implement; "
            "use default (lossless)",
            "dtype",
        )
    kv_cache = "off" if device == "off" else "auto"
    return {"model": replace(model, family=replace(family, kv_cache=kv_cache))}


NODES = [TextEncodeQwenImage21, QwenImage21Cache]
