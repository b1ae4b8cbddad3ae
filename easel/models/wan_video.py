"""Frames through the Wan 2.1 VAE as one video (its causal 3-D convolutions: 1 + 4k frames
make 1 + k latent frames), for WanImageToVideo's start-image latents. Easel's Wan VAE
(easel.models.qwen_vae.QwenVae) holds diffusers' AutoencoderKLQwenImage / AutoencoderKLWan;
the latents are normalised per channel, as every Wan pipeline and ComfyUI's Wan21 latent format
make them."""

from __future__ import annotations

from typing import Any


def is_wan_vae(vae: Any) -> bool:
    """Whether a VAE handle holds the Wan 2.1 VAE (16 latent channels, a temporal axis)."""
    from easel.models.qwen_vae import QwenVae

    module = getattr(vae, "vae", None)
    return (
        isinstance(module, QwenVae)
        and module.config.latent_channels == 16
        and int(getattr(module.vae.config, "input_channels", 3)) == 3
    )


def encode_frames(vae: Any, frames: Any) -> Any:
    """Normalised latents [1, 16, 1 + (T - 1) // 4, H / 8, W / 8] of `frames` [T, 3, H, W] in
    [0, 1] (the posterior's mode, as the pipelines take it), float32 on the CPU."""
    import torch

    module = vae.manager.place(vae.vae)
    inner = module.vae
    param = next(inner.parameters())
    video = (frames * 2 - 1).movedim(0, 1).unsqueeze(0)  # [1, 3, T, H, W]
    with torch.inference_mode():
        raw = inner.encode(video.to(param.device, param.dtype)).latent_dist.mode().float()
    shape = (1, module.config.latent_channels, 1, 1, 1)
    mean = torch.tensor(module.config.latents_mean).view(shape).to(raw.device)
    std = torch.tensor(module.config.latents_std).view(shape).to(raw.device)
    return ((raw - mean) / std).cpu()
