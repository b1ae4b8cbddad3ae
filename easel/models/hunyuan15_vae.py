"""The HunyuanVideo 1.5 VAE (diffusers' AutoencoderKLHunyuanVideo15: causal 3-D convolutions,
16x spatial and 4x temporal compression, 32-channel latents [B, 32, frames, h, w]) seen by
Easel as an image VAE: `Hunyuan15Vae` takes and gives 4-D images and latents (one frame), so
VAEDecode, VAEEncode and the latent preview use it as they use an AutoencoderKL.

Files: ComfyUI's hunyuanvideo15_vae_fp16.safetensors holds the original layout
(`encoder.down.N.block.M.*`, `mid.attn_1.q`), renamed by easel.models.hunyuan15_keys; a file in
diffusers' layout loads as it is. The config is read off the shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families.hunyuan15 import HUNYUAN15_LATENT
from easel.models.transformer_files import fitted
from easel.models.vae_outputs import OneFrameVae, decoded, encoded, frames_as_images

ORIGINAL_PROBE = "encoder.down.0.block.0.norm1.gamma"
DIFFUSERS_PROBE = "encoder.down_blocks.0.resnets.0.norm1.gamma"
TEMPORAL = 4  # every released HunyuanVideo 1.5 VAE: 4 frames per latent frame


def is_hunyuan15_vae(state: Mapping[str, Any]) -> bool:
    """Whether a VAE file is HunyuanVideo 1.5's (either key layout): RMS-norm gammas and causal
    3-D convolutions (`conv.conv`) in the encoder's first block."""
    if "encoder.conv_in.conv.weight" not in state:
        return False
    return ORIGINAL_PROBE in state or DIFFUSERS_PROBE in state


@dataclass
class Hunyuan15VaeConfig:
    """What Easel reads of a VAE's config (easel.models.handles.VaeHandle)."""

    latent_channels: int
    block_out_channels: tuple[int, ...]  # 2^(len - 1) = the spatial factor
    scaling_factor: float
    shift_factor: float = 0.0


class Hunyuan15Vae(OneFrameVae):
    """AutoencoderKLHunyuanVideo15 with 4-D images and latents (one frame)."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae
        levels = int(vae.spatial_compression_ratio).bit_length()
        self.config = Hunyuan15VaeConfig(
            latent_channels=int(vae.config.latent_channels),
            block_out_channels=(1,) * levels,
            scaling_factor=float(vae.config.scaling_factor),
        )

    def encode(self, images: Any, return_dict: bool = True) -> Any:
        """[B, 3, H, W] in [-1, 1] -> latents [B, 32, H/16, W/16] (the posterior's mode, as the
        image-to-video pipeline takes it)."""
        raw = self.vae.encode(images.unsqueeze(2)).latent_dist.mode()[:, :, 0]
        return encoded(raw, return_dict)

    def decode(self, latents: Any, return_dict: bool = True, **_: Any) -> Any:
        """Latents [B, 32, h, w] -> images [B, 3, 16h, 16w] in [-1, 1]; a 5-D latent
        [B, 32, F, h, w] decodes frame by frame into B * F images, batch-major."""
        latents = frames_as_images(latents)
        image = self.vae.decode(latents.unsqueeze(2), return_dict=False)[0][:, :, 0]
        return decoded(image, return_dict)


def _levels(state: Mapping[str, Any], head: str) -> list[int]:
    pattern = re.escape(head) + r"(\d+)\."
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def vae_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """AutoencoderKLHunyuanVideo15's config read off a diffusers-layout state dict."""
    levels = _levels(state, "encoder.down_blocks.")
    widths = [
        int(state[f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight"].shape[0]) for i in levels
    ]
    resnets = _levels(state, "encoder.down_blocks.0.resnets.")
    downsamples = sum(
        f"encoder.down_blocks.{i}.downsamplers.0.conv.conv.weight" in state for i in levels
    )
    return {
        "in_channels": int(state["encoder.conv_in.conv.weight"].shape[1]),
        "out_channels": int(state["decoder.conv_out.conv.weight"].shape[0]),
        "latent_channels": int(state["encoder.conv_out.conv.weight"].shape[0]) // 2,
        "block_out_channels": tuple(widths),
        "layers_per_block": len(resnets),
        "spatial_compression_ratio": 2**downsamples,
        "temporal_compression_ratio": TEMPORAL,
        "scaling_factor": HUNYUAN15_LATENT.scaling_factor,
    }


def load_hunyuan15_vae(path: Path, state: Mapping[str, Any], dtype: Any) -> Hunyuan15Vae:
    """Hunyuan15Vae from an original-layout (ComfyUI) or diffusers-layout VAE file."""
    from diffusers import AutoencoderKLHunyuanVideo15

    from easel.models.hunyuan15_keys import vae_to_diffusers
    from easel.models.qwen_loading import build_module

    def build() -> Any:
        converted = vae_to_diffusers(state) if ORIGINAL_PROBE in state else dict(state)
        config = vae_config(converted)
        if not math.log2(config["spatial_compression_ratio"]).is_integer():
            raise ModelError("its encoder's downsampling is not a power of two")
        vae = build_module(
            AutoencoderKLHunyuanVideo15, config, converted, dtype, "HunyuanVideo 1.5 VAE"
        )
        return Hunyuan15Vae(vae)

    return fitted(path, "a HunyuanVideo 1.5 VAE", build)
