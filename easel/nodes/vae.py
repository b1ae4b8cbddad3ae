"""VAEDecode and VAEEncode: between scaled latents and [0, 1] images."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import NodeError, node
from easel.core.types import Image, Latent, Vae


@node(category="latent", outputs={"image": Image})
def VAEDecode(vae: Vae, latent: Latent) -> Any:
    """Decode latents into a float32 [B, 3, H, W] image in [0, 1] on the CPU."""
    import torch

    module = vae.manager.place(vae.vae)
    param = next(module.parameters())
    samples = latent["samples"]
    if samples.shape[1] != vae.latent_channels:
        raise NodeError(
            f"the latent has {samples.shape[1]} channels, this VAE {vae.latent_channels}", "latent"
        )
    # a latent carries its model family's scaling; a checkpoint's own VAE knows it too
    scale = float(latent.get("scaling_factor", vae.scaling_factor))
    shift = float(latent.get("shift_factor", vae.shift_factor))
    latents = samples / scale + shift
    kwargs = {"force_not_quantize": True} if type(module).__name__ == "VQModel" else {}
    with torch.inference_mode():
        decoded = module.decode(latents.to(param.device, param.dtype), return_dict=False, **kwargs)[
            0
        ]
    return (decoded.float() / 2 + 0.5).clamp(0, 1).cpu()


@node(category="latent", outputs={"latent": Latent})
def VAEEncode(ctx: Context, vae: Vae, image: Image) -> Any:
    """Encode an image (cropped to the VAE's factor) into scaled latents, e.g. for
    image-to-image with a KSampler's denoise < 1."""
    import torch

    module = vae.manager.place(vae.vae)
    param = next(module.parameters())
    factor = vae.scale_factor
    _, channels, height, width = image.shape
    if channels != 3:
        raise NodeError(f"expects an RGB image, got {channels} channels", "image")
    new_h, new_w = height - height % factor, width - width % factor
    if not new_h or not new_w:
        raise NodeError(f"the image is smaller than the VAE factor {factor}", "image")
    if (new_h, new_w) != (height, width):
        ctx.warn(
            f"cropped the image from {width}x{height} to {new_w}x{new_h}, a multiple of "
            f"the VAE factor {factor}"
        )
        top, left = (height - new_h) // 2, (width - new_w) // 2
        image = image[:, :, top : top + new_h, left : left + new_w]
    with torch.inference_mode():
        encoded = module.encode((image * 2 - 1).to(param.device, param.dtype))
        dist = getattr(encoded, "latent_dist", None)
        latents = dist.mode() if dist is not None else encoded.latents
    samples = (latents.float() - vae.shift_factor) * vae.scaling_factor
    return {
        "samples": samples.cpu(),
        "scaling_factor": vae.scaling_factor,
        "shift_factor": vae.shift_factor,
    }


NODES = [VAEDecode, VAEEncode]
