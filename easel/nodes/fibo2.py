"""Fibo 2.0's prompt node, as ComfyUI's TextEncodeFibo2 (its behaviour read off the templates'
inputs and notes, done the way diffusers' BriaFibo2Pipeline does it; ComfyUI's code could not
be read):

- `width` / `height` 0: the size Fibo 2.0 was trained at for the first image's aspect ratio,
  about 1024 x 1024 pixels (BriaFibo2ImageProcessor.get_image_size), 1024 x 1024 without an
  image; other values are floored to a multiple of 16 and size the result.
- One image is scaled to cover the result's size and centre-cropped to it (Lanczos); several
  are each cropped to their own trained size (BriaFibo2ImageProcessor.preprocess). Qwen3-VL
  sees each crop at most 768 pixels a side, with the edit prompt; with `vae` the crops'
  latents are both conditionings' reference latents (the transformer's context latents).
- The negative prompt is encoded as given, without the images (the pipeline's negative).
- `latent` is an empty Flux.2 latent (128 channels at 1/16) of `batch_size` x the result size.
"""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Conditioning, Image, Latent, Vae
from easel.nodes.edit_images import add_references, first_image, latent_of, require_family_clip
from easel.nodes.model_access import model_errors

IMAGE_INPUTS = tuple(f"image_{i}" for i in range(1, 5))
AREA = 1024 * 1024  # the pipeline's default area: (128 * 8) ** 2
MULTIPLE = 16
LATENT_CHANNELS = 128
TEXT_ENCODER_SIZE = 768


def result_size(width: int, height: int, first: Any) -> tuple[int, int]:
    """(width, height) of the result: 0 takes the trained size for the first image's aspect
    (1024 without an image); others are floored to a multiple of 16."""
    from diffusers.pipelines.bria_fibo2.image_processor import BriaFibo2ImageProcessor

    if first is not None:
        aspect = first.width / first.height
        bucket = BriaFibo2ImageProcessor(vae_scale_factor=MULTIPLE).get_image_size(aspect, AREA)
    else:
        bucket = (1024, 1024)
    w = width - width % MULTIPLE if width else bucket[0]
    h = height - height % MULTIPLE if height else bucket[1]
    return w, h


@node(
    category="conditioning",
    outputs={"positive": Conditioning, "negative": Conditioning, "latent": Latent},
)
def TextEncodeFibo2(
    ctx: Context,
    clip: Clip,
    prompt: str = Input("", multiline=True),
    negative_prompt: str = Input("", multiline=True),
    width: int = Input(0, ge=0, le=16384, step=16),
    height: int = Input(0, ge=0, le=16384, step=16),
    batch_size: int = Input(1, ge=1, le=4096),
    image_1: Image | None = None,
    image_2: Image | None = None,
    image_3: Image | None = None,
    image_4: Image | None = None,
    vae: Vae | None = None,
) -> Any:
    """Fibo 2.0's prompts (ComfyUI's TextEncodeFibo2): the prompt (a structured JSON caption,
    or with images an edit instruction) and the negative prompt through Qwen3-VL, and an
    empty latent of the result's size. Images to edit (up to 4) are seen by Qwen3-VL and,
    with `vae`, become reference latents."""
    import torch
    from diffusers.pipelines.bria_fibo2.image_processor import BriaFibo2ImageProcessor

    from easel.models import fibo2_text
    from easel.models.qwen_text import to_pil

    require_family_clip(clip, "fibo2", "a Fibo 2.0 text encoder (TextEncoderLoader type fibo2)")
    images = {"image_1": image_1, "image_2": image_2, "image_3": image_3, "image_4": image_4}
    pictures = []
    for name, image in images.items():
        if image is None:
            continue
        pictures.append(to_pil(first_image(ctx, image, name)[:, :3])[0])
    if pictures and vae is None:
        raise NodeError(
            "the images to edit need the VAE: connect it (their latents condition the model)",
            "vae",
        )
    w, h = result_size(width, height, pictures[0] if pictures else None)
    if w < MULTIPLE or h < MULTIPLE:
        raise NodeError(f"the result must be at least {MULTIPLE} pixels a side", "width")
    references: list[Any] = []
    seen: list[Any] = []
    if pictures:
        processor = BriaFibo2ImageProcessor(vae_scale_factor=MULTIPLE)
        crops, seen = processor.preprocess(
            pictures, height=h, width=w, area=AREA, text_encoder_image_size=TEXT_ENCODER_SIZE
        )
        # the crops' pixels are in [-1, 1] as the image processor makes them
        references = [latent_of(vae, crop) for crop in crops]
    with model_errors("prompt"):
        positive = fibo2_text.encode(clip, prompt, clean=True, images=seen).conditioning
    with model_errors("negative_prompt"):
        negative = fibo2_text.encode(clip, negative_prompt, clean=False).conditioning
    add_references(positive, negative, references)
    samples = torch.zeros(batch_size, LATENT_CHANNELS, h // MULTIPLE, w // MULTIPLE)
    latent = {"samples": samples, "width": w, "height": h}
    return {"positive": positive, "negative": negative, "latent": latent}


NODES = [TextEncodeFibo2]
