"""Cheap latent previews: a linear latent -> RGB map fitted once per VAE by least squares."""

from __future__ import annotations

from typing import Any

# Colours whose latents the fit sees: corners of the RGB cube and greys.
_SWATCHES = [(r, g, b) for r in (0.0, 1.0) for g in (0.0, 1.0) for b in (0.0, 1.0)] + [
    (0.5, 0.5, 0.5),
    (0.25, 0.25, 0.25),
    (0.75, 0.75, 0.75),
    (1.0, 0.5, 0.0),
    (0.0, 0.5, 1.0),
]


def fit_latent_to_rgb(vae_handle: Any) -> Any:
    """A (channels + 1) x 3 matrix mapping a scaled latent pixel (plus 1) to RGB in [0, 1],
    fitted on the VAE's encodings of solid colours (one small encoder pass)."""
    import torch

    vae = vae_handle.vae
    param = next(vae.parameters())
    size = 8 * vae_handle.scale_factor
    colours = torch.tensor(_SWATCHES, dtype=torch.float32)
    images = colours[:, :, None, None].expand(-1, -1, size, size)
    with torch.inference_mode():
        encoded = vae.encode((images * 2 - 1).to(param.device, param.dtype))
        dist = getattr(encoded, "latent_dist", None)
        latents = dist.mode() if dist is not None else encoded.latents
    latents = (latents.float().cpu() - vae_handle.shift_factor) * vae_handle.scaling_factor
    features = latents.mean(dim=(2, 3))
    design = torch.cat([features, torch.ones(len(features), 1)], dim=1)
    return torch.linalg.lstsq(design, colours).solution


def latent_preview(latents: Any, matrix: Any, max_side: int = 128) -> Any:
    """A small PIL image of the first latent of a batch through `matrix`."""
    import torch
    from PIL import Image

    latent = latents[0].detach().float().cpu()
    if latent.dim() == 4:  # [C, frames, h, w] (Qwen-Image-Layered): the first frame
        latent = latent[:, 0]
    channels, height, width = latent.shape
    flat = torch.cat([latent.reshape(channels, -1).T, torch.ones(height * width, 1)], dim=1)
    rgb = (flat @ matrix).clamp(0, 1).reshape(height, width, 3)
    image = Image.fromarray((rgb.numpy() * 255).round().astype("uint8"), "RGB")
    if max(height, width) > max_side:
        image.thumbnail((max_side, max_side))
    return image
