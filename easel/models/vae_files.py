"""VAE files of the `vae/` folder: original (LDM) layout, with or without its
`first_stage_model.` prefix, or diffusers layout; a diffusers AutoencoderKL folder also loads.

A VAE file does not say which latent scaling its model family uses (SD 0.18215, SDXL 0.13025):
latents carry the scaling of the model that made them, and VAEDecode uses it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import ldm_shapes
from easel.models.families.flux import FLUX_LATENT
from easel.models.families.recognise import summarise

DEFAULT_SCALING = 0.18215


def _diffusers_config(state: dict[str, Any]) -> dict[str, Any]:
    """An AutoencoderKL config read off a diffusers-layout state dict's shapes."""
    levels = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k))}
    )
    channels = [
        int(state[f"encoder.down_blocks.{i}.resnets.0.conv2.weight"].shape[0]) for i in levels
    ]
    layers = len(
        {
            m.group(1)
            for k in state
            if (m := re.match(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.", k))
        }
    )
    return {
        "in_channels": int(state["encoder.conv_in.weight"].shape[1]),
        "out_channels": int(state["decoder.conv_out.weight"].shape[0]),
        "latent_channels": int(state["encoder.conv_out.weight"].shape[0]) // 2,
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "norm_num_groups": 32 if channels[0] % 32 == 0 else 1,
        "scaling_factor": DEFAULT_SCALING,
    }


def load_vae_file(path: Path, state: dict[str, Any], dtype: Any, latent: Any = None) -> Any:
    """An AutoencoderKL from a VAE file's state dict, scaled as `latent` (a LatentFormat) says
    when the caller knows its family (a checkpoint's own VAE). A VAE file alone does not say:
    16 channels get Flux's scaling as a default (SD3's VAE has the same shapes); latents carry
    their own family's scaling, which VAEDecode and the samplers use."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import (
        convert_ldm_vae_checkpoint,
        create_vae_diffusers_config_from_ldm,
    )

    from easel.models.families.sd import SD1
    from easel.models.hunyuan15_vae import is_hunyuan15_vae, load_hunyuan15_vae
    from easel.models.qwen21_vae import is_qwen21_vae, load_qwen21_vae
    from easel.models.qwen_vae import is_qwen_vae, load_qwen_vae
    from easel.models.state_dicts import load_into

    if is_hunyuan15_vae(state):  # HunyuanVideo 1.5's 16x video VAE (one frame)
        return load_hunyuan15_vae(path, state, dtype)
    from easel.models.minimax_vae import is_minimax_vae, load_minimax_vae

    if is_minimax_vae(state):  # MiniMax H3's video VAE (one frame)
        return load_minimax_vae(path, state, dtype)
    if is_qwen21_vae(state):  # Qwen-Image 2.1's RGBA 16x VAE (before Wan 2.1's: same keys)
        return load_qwen21_vae(path, state, dtype)
    if is_qwen_vae(state):  # the Wan 2.1 / Qwen-Image video VAE (one frame)
        return load_qwen_vae(path, state, dtype)
    from easel.models.flux2_vae import is_flux2_vae, load_flux2_vae

    if is_flux2_vae(state):  # Flux.2's: batch-norm statistics of its patchified latents
        return load_flux2_vae(path, state, dtype)
    from easel.models.mage_vae import is_mage_vae, load_mage_vae

    if is_mage_vae(state):  # Mage-Flow's one-step diffusion codec (128 channels at 1/16)
        return load_mage_vae(path, state, dtype)
    try:
        if "encoder.down_blocks.0.resnets.0.conv1.weight" in state:
            config = _diffusers_config(state)
            converted = state
        elif any(k.endswith("encoder.down.0.block.0.conv1.weight") for k in state):
            original = (
                ldm_shapes.original_config(state, SD1)
                if any(k.startswith("model.diffusion_model.") for k in state)
                else {
                    "model": {
                        "params": {
                            "scale_factor": DEFAULT_SCALING,
                            "first_stage_config": {
                                "params": {"ddconfig": ldm_shapes.vae_ddconfig(state)}
                            },
                        }
                    }
                }
            )
            config = create_vae_diffusers_config_from_ldm(original, state)
            config["norm_num_groups"] = ldm_shapes.vae_norm_groups(state)
            converted = convert_ldm_vae_checkpoint(state, config)
        else:
            raise ModelError(f"{path.name} is not a VAE Easel knows ({summarise(state)})")
        if "quant_conv.weight" not in converted:  # Flux's ae.safetensors has no quant convs
            config.update(use_quant_conv=False, use_post_quant_conv=False)
        if latent is not None:
            config.update(scaling_factor=latent.scaling_factor, shift_factor=latent.shift_factor)
        elif config.get("latent_channels") == FLUX_LATENT.channels:  # Flux's or SD3's VAE
            config.update(
                scaling_factor=FLUX_LATENT.scaling_factor, shift_factor=FLUX_LATENT.shift_factor
            )
        return load_into(AutoencoderKL, config, converted, dtype, "VAE")
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    except (RuntimeError, ValueError, KeyError, AssertionError) as exc:
        raise ModelError(
            f"{path.name} does not fit the Stable Diffusion VAE architecture "
            f"({type(exc).__name__}: {exc})"
        ) from None
