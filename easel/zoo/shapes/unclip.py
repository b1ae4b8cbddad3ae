"""unCLIP sampling (DALL-E 2): text -> prior -> CLIP image embedding -> decoder -> image."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor


@torch.no_grad()
def sample_prior(
    prior: Any,
    scheduler: Any,
    text: dict[str, torch.Tensor],
    uncond: dict[str, torch.Tensor],
    steps: int = 25,
    guidance: float = 4.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample CLIP image embeddings for text conditions (from `clip_embeddings`), with CFG.

    The prior predicts the normalised clean embedding; `post_process_latents` undoes the
    normalisation with the clip_mean / clip_std stored in the prior's weights.
    """
    n = text["text_embeds"].shape[0]
    dim = prior.config.clip_embed_dim or prior.config.embedding_dim
    latents = randn_tensor((n, dim), generator=generator, device=prior.device)
    scheduler.set_timesteps(steps)
    proj = torch.cat([uncond["text_embeds"].expand(n, -1), text["text_embeds"]])
    hidden = torch.cat([uncond["hidden"].expand(n, -1, -1), text["hidden"]])
    mask = torch.cat([uncond["mask"].expand(n, -1), text["mask"]]).bool()
    for t in scheduler.timesteps:
        out = prior(
            torch.cat([latents, latents]),
            t,
            proj_embedding=proj,
            encoder_hidden_states=hidden,
            attention_mask=mask,
        ).predicted_image_embedding
        pred_uncond, pred_text = out.chunk(2)
        pred = pred_uncond + guidance * (pred_text - pred_uncond)
        latents = scheduler.step(pred, t, latents, generator=generator).prev_sample
    return prior.post_process_latents(latents)


@torch.no_grad()
def sample_decoder(
    decoder: Any,
    scheduler: Any,
    vae: Any,
    image_embeds: torch.Tensor,
    steps: int = 20,
    guidance: float = 3.0,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Decode CLIP image embeddings to uint8 32x32 images (zero embedding = unconditional)."""
    from easel.zoo.shapes.training import tensor_to_images

    n = image_embeds.shape[0]
    size = decoder.config.sample_size
    latents = randn_tensor(
        (n, decoder.config.in_channels, size, size), generator=generator, device=decoder.device
    )
    scheduler.set_timesteps(steps)
    latents = latents * scheduler.init_noise_sigma
    cond = torch.cat([torch.zeros_like(image_embeds), image_embeds])
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        out = decoder(
            model_in, t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": cond}
        ).sample
        pred_uncond, pred_cond = out.chunk(2)
        noise_pred = pred_uncond + guidance * (pred_cond - pred_uncond)
        latents = scheduler.step(noise_pred, t, latents).prev_sample
    images = vae.decode(latents / vae.config.scaling_factor).sample
    return tensor_to_images(images)
