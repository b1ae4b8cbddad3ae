"""InstructPixToPixConditioning (ComfyUI's node of that name): an image's latent attached to both
prompts as the model's extra input channels. Flux.1 Canny/Depth read it as their control image
(FluxControlPipeline's `control_image`); the latent returned is an empty one of the image's
size, to sample from."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import NodeError, node
from easel.core.types import Conditioning, Image, Latent, Vae


@node(
    category="conditioning/instructpix2pix",
    outputs={"positive": Conditioning, "negative": Conditioning, "latent": Latent},
)
def InstructPixToPixConditioning(
    ctx: Context, positive: Conditioning, negative: Conditioning, vae: Vae, image: Image
) -> Any:
    """Attach an image to both prompts for a model that takes one as extra input channels:
    Flux.1 Canny and Depth (give them a Canny or depth map). The image is cropped (centred)
    to a multiple of the VAE factor and encoded; `latent` is an empty latent of its size.
    HiDream E1 (which ComfyUI also feeds this way) is not supported: diffusers has no HiDream
    editing pipeline to hold Easel's implementation to, and sampling refuses it."""
    import torch

    from easel.nodes.inpaint import encode

    if image.dim() != 4 or image.shape[1] not in (3, 4):
        raise NodeError(
            f"expects an RGB image [B, 3, H, W], got shape {tuple(image.shape)}", "image"
        )
    image = image[:, :3]  # ComfyUI's VAE encodes the colour channels, dropping alpha
    factor = vae.scale_factor
    height, width = int(image.shape[2]), int(image.shape[3])
    new_h, new_w = height - height % factor, width - width % factor
    if not new_h or not new_w:
        raise NodeError(
            f"the image ({width}x{height}) is smaller than the VAE factor {factor}", "image"
        )
    if (new_h, new_w) != (height, width):
        ctx.warn(
            f"cropped the image from {width}x{height} to {new_w}x{new_h}, a multiple of "
            f"the VAE factor {factor}"
        )
        top, left = (height - new_h) // 2, (width - new_w) // 2
        image = image[:, :, top : top + new_h, left : left + new_w]
    concat = encode(vae, image)
    return {
        "positive": {**positive, "concat_latent_image": concat},
        "negative": {**negative, "concat_latent_image": concat},
        "latent": {"samples": torch.zeros_like(concat)},
    }


NODES = [InstructPixToPixConditioning]
