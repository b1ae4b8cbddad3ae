"""Inpainting: masks into latents (VAEEncodeForInpaint, SetLatentNoiseMask) and conditioning
(InpaintModelConditioning), and what the sampler makes of them for ordinary and 9-channel
inpainting UNets."""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning, Image, Latent, Mask, Model, Vae


def as_mask(mask: Any, height: int, width: int, input_name: str = "mask") -> Any:
    """A MASK ([H, W], [B, H, W] or [B, 1, H, W]) as [B, 1, height, width] in [0, 1],
    resized bilinearly when its size differs (as ComfyUI does)."""
    import torch
    import torch.nn.functional as F

    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3, 4):
        raise NodeError("expected a mask [height, width] or [batch, height, width]", input_name)
    mask = mask.float()
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[:, None]
    if tuple(mask.shape[-2:]) != (height, width):
        mask = F.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False)
    return mask.clamp(0, 1)


def crop_to_factor(image: Any, mask: Any, factor: int) -> tuple[Any, Any]:
    """Image and mask cropped (centred) to a multiple of the VAE factor."""
    height, width = image.shape[2], image.shape[3]
    new_h, new_w = height - height % factor, width - width % factor
    if not new_h or not new_w:
        raise NodeError(f"the image is smaller than the VAE factor {factor}", "image")
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return (
        image[:, :, top : top + new_h, left : left + new_w],
        mask[:, :, top : top + new_h, left : left + new_w],
    )


def encode(vae: Any, image: Any) -> Any:
    """Scaled latents of an RGB image in [0, 1] (the posterior's mode)."""
    import torch

    module = vae.manager.place(vae.vae)
    param = next(module.parameters())
    with torch.inference_mode():
        encoded = module.encode((image * 2 - 1).to(param.device, param.dtype))
        dist = getattr(encoded, "latent_dist", None)
        latents = dist.mode() if dist is not None else encoded.latents
    return ((latents.float() - vae.shift_factor) * vae.scaling_factor).cpu()


def grey_masked(image: Any, mask: Any) -> Any:
    """The image with the masked pixels (mask > 0.5) set to mid grey."""
    keep = (mask < 0.5).float()
    return image * keep + 0.5 * (1 - keep)


@node(category="latent/inpaint", outputs={"latent": Latent})
def VAEEncodeForInpaint(
    vae: Vae, image: Image, mask: Mask, grow_mask_by: int = Input(6, ge=0, le=64)
) -> Any:
    """Encode an image for inpainting: the masked area (grown by `grow_mask_by` pixels) is
    greyed out before encoding, and the latent carries the mask, so the sampler paints only
    there. For inpainting models and ordinary ones; use denoise 1."""
    import torch
    import torch.nn.functional as F

    if image.shape[1] != 3:
        raise NodeError(f"expects an RGB image, got {image.shape[1]} channels", "image")
    full = as_mask(mask, image.shape[2], image.shape[3])
    image, full = crop_to_factor(image, full, vae.scale_factor)
    if grow_mask_by:
        kernel = torch.ones(1, 1, grow_mask_by * 2 + 1, grow_mask_by * 2 + 1)
        grown = F.conv2d(full.round(), kernel, padding=grow_mask_by).clamp(0, 1)
    else:
        grown = full
    return {"samples": encode(vae, grey_masked(image, full.round())), "noise_mask": grown}


@node(category="latent/inpaint", outputs={"latent": Latent})
def SetLatentNoiseMask(latent: Latent, mask: Mask) -> Any:
    """Attach a mask to a latent: the sampler changes only the masked area (1 = paint)."""
    out = dict(latent)
    out["noise_mask"] = as_mask(mask, mask.shape[-2], mask.shape[-1])  # resized when sampling
    return out


@node(
    category="conditioning/inpaint",
    outputs={"positive": Conditioning, "negative": Conditioning, "latent": Latent},
)
def InpaintModelConditioning(
    vae: Vae,
    image: Image,
    mask: Mask,
    positive: Conditioning,
    negative: Conditioning,
    noise_mask: bool = True,
) -> Any:
    """Conditioning for an inpainting model (9-channel UNet): both prompts carry the mask and
    the latent of the image with the masked area greyed; the latent is the image's own. With
    `noise_mask` the sampler also keeps the unmasked area exactly."""
    full = as_mask(mask, image.shape[2], image.shape[3])
    image, full = crop_to_factor(image, full, vae.scale_factor)
    concat = {"concat_latent_image": encode(vae, grey_masked(image, full)), "concat_mask": full}
    latent: dict[str, Any] = {"samples": encode(vae, image)}
    if noise_mask:
        latent["noise_mask"] = full
    return {
        "positive": {**positive, **concat},
        "negative": {**negative, **concat},
        "latent": latent,
    }


def inpaint_inputs(
    model: Any, positive: dict[str, Any], latent: dict[str, Any], shape: tuple[int, ...]
) -> Any:
    """The sampler's Inpaint for this model and latent, or None for plain sampling."""
    import torch

    from easel.models.sampling import Inpaint

    batch, height, width = shape[0], shape[-2], shape[-1]  # 5-D: a layered latent
    in_channels = int(model.unet.config.in_channels)
    concat_model = in_channels == shape[1] + 5
    noise_mask = latent.get("noise_mask")
    if not concat_model and noise_mask is None:
        return None
    mask = positive.get("concat_mask")
    mask = mask if mask is not None else noise_mask
    small_mask = (
        as_mask(mask, height, width, "latent")
        if mask is not None
        else torch.ones(batch, 1, height, width)
    )
    concat = None
    if concat_model:
        masked = positive.get("concat_latent_image")
        if masked is None:
            masked = latent["samples"] if noise_mask is not None else grey_latent(model, shape)
        if tuple(masked.shape[-2:]) != (height, width):
            raise NodeError(
                f"the inpainting image latent is {tuple(masked.shape[-2:])}, the "
                f"latent {height, width}: use the same image size",
                "latent",
            )
        concat = torch.cat([small_mask.expand(masked.shape[0], -1, -1, -1), masked], dim=1)
    blend = None if noise_mask is None else as_mask(noise_mask, height, width, "latent")
    return Inpaint(
        mask=blend if blend is not None else small_mask,
        source=latent["samples"],
        concat=concat,
        blend=blend is not None,
        differential=getattr(model, "differential", None),
    )


@node(category="latent/inpaint", outputs={"model": Model})
def DifferentialDiffusion(
    model: Model, strength: float = Input(1.0, ge=0.0, le=1.0, step=0.01)
) -> Any:
    """Inpaint with a soft mask as a map of how much to change (ComfyUI's
    DifferentialDiffusion): at each step only the mask's values at or above the step's
    progress are repainted, so strong values change from the start and weak ones only near
    the end. `strength` below 1 blends that with the plain soft mask. Needs a noise mask
    (SetLatentNoiseMask, or InpaintModelConditioning with noise_mask)."""
    from dataclasses import replace

    return replace(model, differential=strength)


def grey_latent(model: Any, shape: tuple[int, ...]) -> Any:
    """The latent of a mid-grey image: what an inpainting UNet sees as "nothing kept" when
    it is used for plain text-to-image."""
    import torch

    if model.vae is None:
        return torch.zeros(shape)
    factor = model.vae_scale_factor
    grey = torch.full((1, 3, shape[2] * factor, shape[3] * factor), 0.5)
    return encode(model.vae, grey).expand(shape[0], -1, -1, -1)


NODES = [VAEEncodeForInpaint, SetLatentNoiseMask, InpaintModelConditioning, DifferentialDiffusion]
