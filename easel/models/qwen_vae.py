"""The Qwen-Image VAE: diffusers' AutoencoderKLQwenImage (the Wan 2.1 video VAE: causal 3-D
convolutions, latents [B, 16, frames, h, w]) seen by Easel as an image VAE.

`QwenVae` wraps it so VAEDecode, VAEEncode and the latent preview use it as they use an
AutoencoderKL: images and latents are 4-D (one frame), and latents are normalised per channel,
(z - latents_mean) / latents_std, as QwenImagePipeline samples them; hence a scalar scaling of 1
and shift of 0 (the family's LatentFormat). Files: ComfyUI's qwen_image_vae.safetensors holds
the original Wan layout (`encoder.downsamples.*`, `decoder.upsamples.*`, `conv1`, `conv2`),
converted by diffusers' `convert_wan_vae_to_diffusers`; a file in diffusers' layout loads too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families.qwen_image import LATENTS_MEAN, LATENTS_STD
from easel.models.transformer_files import fitted
from easel.models.vae_outputs import (
    NormalisedVaeConfig,
    OneFrameVae,
    decoded,
    encoded,
    frames_as_images,
    per_channel,
)

WAN_PROBE = "decoder.middle.0.residual.0.gamma"
DIFFUSERS_PROBE = "decoder.mid_block.resnets.0.norm1.gamma"


def is_qwen_vae(state: Mapping[str, Any]) -> bool:
    """Whether a VAE file is a Wan 2.1 / Qwen-Image VAE (either key layout)."""
    return WAN_PROBE in state or DIFFUSERS_PROBE in state


class QwenVae(OneFrameVae):
    """AutoencoderKLQwenImage with 4-D images and normalised 4-D latents."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae
        spatial = int(getattr(vae, "spatial_compression_ratio", 8))
        levels = spatial.bit_length()  # block_out_channels of len(levels): 2^(len-1) = spatial
        self.config = NormalisedVaeConfig(
            latent_channels=int(vae.config.z_dim),
            block_out_channels=(1,) * levels,
            latents_mean=list(vae.config.latents_mean),
            latents_std=list(vae.config.latents_std),
        )

    def _stats(self, like: Any) -> tuple[Any, Any]:
        shape = (1, self.config.latent_channels, 1, 1)
        mean = per_channel(self.config.latents_mean, like, shape)
        return mean, per_channel(self.config.latents_std, like, shape)

    def encode(self, images: Any, return_dict: bool = True) -> Any:
        """[B, 3, H, W] in [-1, 1] -> normalised latents [B, 16, H/8, W/8] (the posterior's
        mode, as the Edit pipelines take it)."""
        import torch

        if images.shape[1] == 3 and int(getattr(self.vae.config, "input_channels", 3)) == 4:
            # Qwen-Image-Layered's RGBA VAE: an RGB image is opaque
            images = torch.cat([images, torch.ones_like(images[:, :1])], dim=1)
        raw = self.vae.encode(images.unsqueeze(2)).latent_dist.mode()[:, :, 0]
        mean, std = self._stats(raw)
        return encoded((raw - mean) / std, return_dict)

    def decode(self, latents: Any, return_dict: bool = True, **_: Any) -> Any:
        """Normalised latents [B, 16, h, w] -> images [B, 3, 8h, 8w] in [-1, 1] (RGBA, 4
        channels, from Qwen-Image-Layered's VAE). A 5-D latent [B, 16, F, h, w] decodes frame
        by frame into B * F images, batch-major (as ComfyUI's VAEDecode gives a video's); with
        F > 1 on the Wan 2.1 VAE (3 channels) as one video, its causal decoder making
        1 + 4 (F - 1) frames (Wan 2.1 / ChronoEdit latents, as ComfyUI decodes them)."""
        if latents.dim() == 5 and latents.shape[2] > 1 and self._is_video_vae():
            mean, std = self._stats(latents)
            raw = latents * std.unsqueeze(2) + mean.unsqueeze(2)
            video = self.vae.decode(raw, return_dict=False)[0]  # [B, 3, frames, H, W]
            image = video.movedim(2, 1).reshape(-1, *video.shape[1:2], *video.shape[3:])
            return decoded(image, return_dict)
        latents = frames_as_images(latents)
        mean, std = self._stats(latents)
        raw = (latents * std + mean).unsqueeze(2)
        image = self.vae.decode(raw, return_dict=False)[0][:, :, 0]
        return decoded(image, return_dict)

    def _is_video_vae(self) -> bool:
        """The Wan 2.1 VAE (RGB; Qwen-Image-Layered's RGBA one decodes layers, not frames)."""
        return int(getattr(self.vae.config, "input_channels", 3)) == 3


# -- files ----------------------------------------------------------------------------------------
def _wan_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """AutoencoderKLQwenImage's config read off a Wan-layout encoder: base width, the
    downsample levels (residual blocks between resamples), which resamples are temporal."""
    base = int(state["encoder.conv1.weight"].shape[0])
    blocks = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"encoder\.downsamples\.(\d+)\.", k))}
    )
    levels: list[list[int]] = [[]]
    temporal: list[bool] = []
    for index in blocks:
        head = f"encoder.downsamples.{index}."
        if head + "residual.0.gamma" in state:
            levels[-1].append(index)
        else:
            temporal.append(head + "time_conv.weight" in state)
            levels.append([])
    widths = [int(state[f"encoder.downsamples.{g[-1]}.residual.6.weight"].shape[0]) for g in levels]
    z_dim = int(state["conv2.weight"].shape[0])
    return {
        "base_dim": base,
        "z_dim": z_dim,
        "input_channels": int(state["encoder.conv1.weight"].shape[1]),  # 4: Layered's RGBA
        "dim_mult": [w // base for w in widths],
        "num_res_blocks": len(levels[0]),
        "attn_scales": [],
        "temperal_downsample": temporal,
        "dropout": 0.0,
        "latents_mean": list(LATENTS_MEAN),
        "latents_std": list(LATENTS_STD),
    }


def load_qwen_vae(path: Path, state: dict[str, Any], dtype: Any) -> QwenVae:
    """QwenVae from a Wan-layout (ComfyUI) or diffusers-layout VAE file."""
    from diffusers import AutoencoderKLQwenImage
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    from easel.models.qwen_loading import build_module

    def build() -> Any:
        if WAN_PROBE in state:
            config = _wan_config(state)
            converted = convert_wan_vae_to_diffusers(state)
        else:
            raise ModelError(
                "a Qwen-Image VAE in diffusers' layout: load its diffusers folder instead"
            )
        if config["z_dim"] != len(LATENTS_MEAN):
            raise ModelError(
                f"{config['z_dim']} latent channels: Easel reads the 16-channel Wan 2.1 / "
                "Qwen-Image VAE"
            )
        vae = build_module(AutoencoderKLQwenImage, config, converted, dtype, "Qwen-Image VAE")
        return QwenVae(vae)

    return fitted(path, "a Wan / Qwen-Image VAE", build)
