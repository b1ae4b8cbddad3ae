"""The Qwen-Image 2.1 VAE: diffusers' AutoencoderKLQwenImage21 (a Wan-style causal VAE with
one-frame kernels, 16x spatial, 64 latent channels, RGBA in and out) seen by Easel as an image
VAE.

`Qwen21Vae` gives VAEDecode / VAEEncode 4-D images and latents normalised per channel,
(z - latents_mean) / latents_std, as QwenImage21Pipeline samples them (the family's scalar
scaling is 1). Decoding gives RGBA images (4 channels, as the pipeline's and ComfyUI's do); an
RGB image is encoded with an opaque alpha channel.

Files: ComfyUI's qwen_image_2.1_vae holds the original (Wan) key layout, `encoder.conv1`,
`encoder.downsamples.L.downsamples.I.residual.*`, `decoder.upsamples.*`, `encoder.head.*`,
`conv1` / `conv2` (the quant convs), with 5-D kernels one frame deep. diffusers has no converter
for this VAE (its `convert_wan_vae_to_diffusers` knows Wan 2.1's flat block numbering, not these
levels), so the renaming is written here (`diffusers_keys`); a file in diffusers' layout loads as
it is. The latent statistics are not in the file: they are the released VAE config's, which are
AutoencoderKLQwenImage21's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.transformer_files import fitted
from easel.models.vae_outputs import NormalisedVaeConfig, OneFrameVae, decoded, encoded, per_channel

ORIGINAL_PROBE = "encoder.downsamples.0.downsamples.0.residual.0.gamma"
DIFFUSERS_PROBE = "encoder.down_blocks.0.resnets.0.norm1.gamma"
RGBA_PROBE = "encoder.conv1.weight"

# original key -> diffusers key, applied in order (each rule's output feeds the next)
RULES: tuple[tuple[str, str], ...] = (
    (r"^conv1\.", "quant_conv."),
    (r"^conv2\.", "post_quant_conv."),
    (r"^(encoder|decoder)\.conv1\.", r"\1.conv_in."),
    (r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out."),
    (r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out."),
    (r"^(encoder|decoder)\.middle\.0\.", r"\1.mid_block.resnets.0."),
    (r"^(encoder|decoder)\.middle\.1\.", r"\1.mid_block.attentions.0."),
    (r"^(encoder|decoder)\.middle\.2\.", r"\1.mid_block.resnets.1."),
    (
        r"^encoder\.downsamples\.(\d+)\.downsamples\.\d+\.(resample|time_conv)\.",
        r"encoder.down_blocks.\1.downsampler.\2.",
    ),
    (r"^encoder\.downsamples\.(\d+)\.downsamples\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2."),
    (
        r"^decoder\.upsamples\.(\d+)\.upsamples\.\d+\.(resample|time_conv)\.",
        r"decoder.up_blocks.\1.upsampler.\2.",
    ),
    (r"^decoder\.upsamples\.(\d+)\.upsamples\.(\d+)\.", r"decoder.up_blocks.\1.resnets.\2."),
    (r"\.residual\.0\.", ".norm1."),
    (r"\.residual\.2\.", ".conv1."),
    (r"\.residual\.3\.", ".norm2."),
    (r"\.residual\.6\.", ".conv2."),
    (r"\.shortcut\.", ".conv_shortcut."),
)


def is_qwen21_vae(state: Mapping[str, Any]) -> bool:
    """Whether a VAE file is Qwen-Image 2.1's (either layout): levels of residual blocks and a
    4-channel (RGBA) input convolution."""
    if ORIGINAL_PROBE in state and RGBA_PROBE in state:
        return int(state[RGBA_PROBE].shape[1]) == 4
    if DIFFUSERS_PROBE in state and "encoder.conv_in.weight" in state:
        return int(state["encoder.conv_in.weight"].shape[1]) == 4 and any(
            k.startswith("encoder.down_blocks.0.downsampler.") for k in state
        )
    return False


def diffusers_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """The original layout's keys as AutoencoderKLQwenImage21's, one-frame 5-D kernels
    squeezed to the 2-D kernels diffusers' convolutions hold."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        for pattern, replacement in RULES:
            new = re.sub(pattern, replacement, new)
        if getattr(value, "ndim", 0) == 5:
            if int(value.shape[2]) != 1:
                raise ModelError(
                    f"{key} has a kernel {value.shape[2]} frames deep: the Qwen-Image 2.1 VAE's "
                    "are one frame deep"
                )
            value = value.squeeze(2)
        out[new] = value
    return out


def vae_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """AutoencoderKLQwenImage21's config read off diffusers-layout shapes: widths per level,
    residual blocks per level, which levels downsample in time, latent and image channels."""
    levels = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k))}
    )
    head = "encoder.down_blocks.{}.resnets.0.conv2.weight"
    widths = [int(state[head.format(i)].shape[0]) for i in levels]
    base = int(state["encoder.conv_in.weight"].shape[0])
    blocks = {
        int(m.group(1))
        for k in state
        if (m := re.match(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.", k))
    }
    temporal = [
        f"encoder.down_blocks.{i}.downsampler.time_conv.weight" in state for i in levels[:-1]
    ]
    decoder_width = int(state["decoder.conv_in.weight"].shape[0])
    mult = [w // base for w in widths]
    return {
        "base_dim": base,
        "decoder_base_dim": decoder_width // mult[-1],
        "z_dim": int(state["post_quant_conv.weight"].shape[0]),
        "dim_mult": mult,
        "num_res_blocks": len(blocks),
        "attn_scales": [],
        "temperal_downsample": temporal,
        "dropout": 0.0,
        "is_residual": True,
        "in_channels": int(state["encoder.conv_in.weight"].shape[1]),
        "out_channels": int(state["decoder.conv_out.weight"].shape[0]),
        "scale_factor_spatial": 2 ** (len(levels) - 1),
    }


class Qwen21Vae(OneFrameVae):
    """AutoencoderKLQwenImage21 with 4-D images and normalised 4-D latents."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae
        spatial = int(getattr(vae, "spatial_compression_ratio", 16))
        self.image_channels = int(vae.config.in_channels)
        self.config = NormalisedVaeConfig(
            latent_channels=int(vae.config.z_dim),
            block_out_channels=(1,) * spatial.bit_length(),
            latents_mean=list(vae.config.latents_mean),
            latents_std=list(vae.config.latents_std),
        )

    def _stats(self, like: Any) -> tuple[Any, Any]:
        shape = (1, self.config.latent_channels, 1, 1)
        mean = per_channel(self.config.latents_mean, like, shape)
        return mean, per_channel(self.config.latents_std, like, shape)

    def encode(self, images: Any, return_dict: bool = True) -> Any:
        """[B, 3|4, H, W] in [-1, 1] -> normalised latents [B, 64, H/16, W/16] (the posterior's
        mode, as the pipeline takes condition images); RGB gets an opaque alpha channel."""
        import torch

        if images.shape[1] == 3 and self.image_channels == 4:
            images = torch.cat([images, torch.ones_like(images[:, :1])], dim=1)
        raw = self.vae.encode(images.unsqueeze(2)).latent_dist.mode()[:, :, 0]
        mean, std = self._stats(raw)
        return encoded((raw - mean) / std, return_dict)

    def decode(self, latents: Any, return_dict: bool = True, **_: Any) -> Any:
        """Normalised latents [B, 64, h, w] -> images [B, 4, 16h, 16w] (RGBA) in [-1, 1]."""
        mean, std = self._stats(latents)
        raw = (latents * std + mean).unsqueeze(2)
        image = self.vae.decode(raw, return_dict=False)[0][:, :, 0]
        return decoded(image, return_dict)


def load_qwen21_vae(path: Path, state: Mapping[str, Any], dtype: Any) -> Qwen21Vae:
    """Qwen21Vae from an original-layout (ComfyUI) or diffusers-layout VAE file."""
    from diffusers import AutoencoderKLQwenImage21

    from easel.models.qwen_loading import build_module

    def build() -> Any:
        converted = diffusers_keys(state) if ORIGINAL_PROBE in state else dict(state)
        config = vae_config(converted)
        vae = build_module(AutoencoderKLQwenImage21, config, converted, dtype, "Qwen-Image 2.1 VAE")
        return Qwen21Vae(vae)

    return fitted(path, "a Qwen-Image 2.1 VAE", build)
