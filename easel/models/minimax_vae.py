"""MiniMax H3's video VAE (a causal 3-D CNN encoder, a ViT decoder; 24 channels at 1/16, 4 frames
per latent frame) seen by Easel as an image VAE: diffusers' AutoencoderKLMiniMaxH3 wrapped so
VAEDecode, VAEEncode and the latent preview use it as an AutoencoderKL.

- Images and latents are 4-D (one frame). Latents are normalised per channel with the VAE's
  `latents_mean` / `latents_std` (the file's own buffers), hence a scalar scaling of 1 and
  shift of 0 (the family's LatentFormat). Pixels are ImageNet-normalised [0, 1] RGB inside
  the VAE; the wrapper takes and gives [-1, 1] as VAEDecode / VAEEncode expect.
- One latent frame decodes to the last of the decoder's 4 frames of it (the causal first
  frame), and one image encodes alone, as ComfyUI's MiniMax H3 VAE does for single images; the
  VAE's own clip decoder / encoder (spatial tiling on, as released) does the work: diffusers'
  public `decode` decodes whole 17-frame chunks only.
- Files: ComfyUI's `minimax_h3_video_vae` layout (`encoder.down.N.block.M`,
  `decoder.x_embedder`, per-head `[q k v]` rows in `attn.to_qkv`, `[gate; value]` in `ff.w1`)
  converted here (diffusers has no converter for this VAE); a file in diffusers' layout loads
  too. The released geometry (16x spatial, 4x temporal over the downsampling levels 1 and 2,
  heads of 64) is read back from the shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.vae_outputs import (
    NormalisedVaeConfig,
    OneFrameVae,
    decoded,
    encoded,
    frames_as_images,
    per_channel,
)

COMFY_PROBE = "decoder.x_embedder.weight"
DIFFUSERS_PROBE = "decoder.proj_in.weight"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the VAE's pixel normalisation (the pipeline's)
IMAGENET_STD = (0.229, 0.224, 0.225)
DECODER_HEAD = 64  # the released decoder's head width (ComfyUI builds it with 64)


def is_minimax_vae(state: Mapping[str, Any]) -> bool:
    """Whether a VAE file is MiniMax H3's video VAE (either key layout)."""
    return "decoder.register_tokens" in state and (
        COMFY_PROBE in state or DIFFUSERS_PROBE in state
    )


class MiniMaxVae(OneFrameVae):
    """AutoencoderKLMiniMaxH3 with 4-D [-1, 1] images and normalised 4-D latents."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae
        levels = int(vae.spatial_compression_ratio).bit_length()
        self.config = NormalisedVaeConfig(
            latent_channels=int(vae.config.latent_channels),
            block_out_channels=(1,) * levels,
            latents_mean=list(vae.config.latents_mean),
            latents_std=list(vae.config.latents_std),
        )

    def _stats(self, like: Any, channels: int) -> tuple[Any, Any]:
        shape = (1, channels, 1, 1, 1)
        mean = per_channel(self.config.latents_mean, like, shape)
        return mean, per_channel(self.config.latents_std, like, shape)

    def _pixel_stats(self, like: Any) -> tuple[Any, Any]:
        shape = (1, 3, 1, 1, 1)
        return per_channel(IMAGENET_MEAN, like, shape), per_channel(IMAGENET_STD, like, shape)

    def encode(self, images: Any, return_dict: bool = True) -> Any:
        """[B, 3, H, W] in [-1, 1] -> normalised latents [B, 24, H/16, W/16] (the posterior's
        mean)."""
        pixels = ((images + 1) / 2).unsqueeze(2)
        mean, std = self._pixel_stats(pixels)
        moments = self.vae._encode_clip(((pixels - mean) / std).to(self._dtype()))
        raw = moments[:, :, -1:].chunk(2, dim=1)[0].float()
        lmean, lstd = self._stats(raw, raw.shape[1])
        return encoded(((raw - lmean) / lstd)[:, :, 0], return_dict)

    def decode(self, latents: Any, return_dict: bool = True, **_: Any) -> Any:
        """Normalised latents [B, 24, h, w] -> images [B, 3, 16h, 16w] in [-1, 1]. A 5-D latent
        [B, 24, F, h, w] decodes frame by frame into B * F images, batch-major."""
        z = frames_as_images(latents).unsqueeze(2).float()
        mean, std = self._stats(z, z.shape[1])
        z = (z * std + mean).to(self._dtype())
        frames = self.vae._decode_clip(z)
        pixels = frames[:, :, -1:].float()
        pmean, pstd = self._pixel_stats(pixels)
        image = ((pixels * pstd + pmean).clamp(0.0, 1.0) * 2 - 1)[:, :, 0]
        return decoded(image, return_dict)

    def _dtype(self) -> Any:
        return self.vae.post_quant_conv.weight.dtype


# -- files ----------------------------------------------------------------------------------------
def _levels(state: Mapping[str, Any], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def convert_comfy(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(diffusers state dict, AutoencoderKLMiniMaxH3 config) of a ComfyUI-layout file."""
    import torch

    levels = _levels(state, r"encoder\.down\.(\d+)\.")
    widths = [int(state[f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) for i in levels]
    per_block = len(_levels(state, r"encoder\.down\.0\.block\.(\d+)\."))
    downsampling = [i for i in levels if f"encoder.down.{i}.downsample.conv.weight" in state]
    dim = int(state[COMFY_PROBE].shape[0])
    heads = max(1, dim // DECODER_HEAD)
    blocks = _levels(state, r"decoder\.transformer_blocks\.(\d+)\.")
    out_rows, _ = state["decoder.proj_out.weight"].shape
    spatial = 2 ** len(downsampling)
    temporal = int(out_rows) // (3 * spatial * spatial)
    time_levels = max(0, temporal.bit_length() - 1)  # 4: levels 1 and 2, as released
    time_down = [
        2 if i in downsampling[1 : 1 + time_levels] else 1 for i in range(len(levels))
    ]
    space_down = [2 if i in downsampling else 1 for i in range(len(levels))]
    mult = int(state["decoder.transformer_blocks.0.ff.w1.weight"].shape[0]) // (2 * dim)
    config = {
        "in_channels": int(state["encoder.conv_in.weight"].shape[1]),
        "out_channels": 3,
        "latent_channels": int(state["post_quant_conv.weight"].shape[0]),
        "block_out_channels": widths,
        "layers_per_block": per_block,
        "spatial_downsample_factors": space_down,
        "temporal_downsample_factors": time_down,
        "decoder_num_layers": len(blocks),
        "decoder_num_attention_heads": heads,
        "decoder_attention_head_dim": dim // heads,
        "decoder_num_register_tokens": int(state["decoder.register_tokens"].shape[1]),
        "decoder_ffn_mult": mult,
    }
    if "latents_mean" in state:
        config["latents_mean"] = [float(v) for v in state["latents_mean"].float()]
        config["latents_std"] = [float(v) for v in state["latents_std"].float()]
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key in ("latents_mean", "latents_std", "decoder.mask_token"):
            continue
        new = re.sub(r"^encoder\.down\.(\d+)\.block\.", r"encoder.down_blocks.\1.resnets.", key)
        new = re.sub(
            r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0.", new
        )
        new = new.replace(".nin_shortcut.", ".conv_shortcut.")
        new = new.replace("decoder.x_embedder.", "decoder.proj_in.")
        new = new.replace(".attn.to_out.", ".attn.to_out.0.")
        new = new.replace(".ff.w2.", ".ff.net.2.")
        if ".attn.to_qkv." in new:
            # per head [q k v] rows (ComfyUI views them (S, heads, 3 * head_dim))
            rows = value.unflatten(0, (heads, 3, dim // heads))
            for index, name in enumerate(("to_q", "to_k", "to_v")):
                out[new.replace("to_qkv", name)] = rows[:, index].flatten(0, 1).contiguous()
            continue
        if ".ff.w1." in new:
            gate, hidden = torch.chunk(value, 2, dim=0)  # ComfyUI's SwiGLU: [gate; value]
            out[new.replace(".ff.w1.", ".ff.net.0.proj.")] = torch.cat([hidden, gate], dim=0)
            continue
        out[new] = value
    return out, config


def load_minimax_vae(path: Path, state: dict[str, Any], dtype: Any) -> MiniMaxVae:
    """MiniMaxVae from a ComfyUI-layout (or diffusers-layout with a config-free default) file."""
    import torch
    from diffusers import AutoencoderKLMiniMaxH3
    from diffusers.models.autoencoders.autoencoder_kl_minimax_h3 import (
        MiniMaxH3VideoRotaryPosEmbed,
    )

    if COMFY_PROBE not in state:
        raise ModelError(
            f"{path.name}: a MiniMax H3 VAE in diffusers' layout carries its config in its "
            "folder; VAELoader reads ComfyUI's minimax_h3_video_vae file"
        )
    try:
        converted, config = convert_comfy(state)
        with torch.device("meta"):
            vae = AutoencoderKLMiniMaxH3.from_config(config)
        converted = {k: v.to(dtype) for k, v in converted.items()}
        vae.load_state_dict(converted, strict=True, assign=True)
        decoder = vae.decoder
        head = int(config["decoder_attention_head_dim"])
        decoder.rope = MiniMaxH3VideoRotaryPosEmbed(
            int(head * vae.config.decoder_rope_dim_ratio), theta=vae.config.decoder_rope_theta
        )
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        raise ModelError(
            f"{path.name} looks like MiniMax H3's video VAE but does not fit it "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return MiniMaxVae(vae.eval().requires_grad_(False))
