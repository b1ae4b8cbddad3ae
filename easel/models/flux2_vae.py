"""The Flux.2 VAE (diffusers' AutoencoderKLFlux2) from ComfyUI's `vae/flux2-vae.safetensors`
(original LDM keys, quant convs inside the encoder and decoder or beside them, and the
batch-norm statistics `bn.running_mean` / `bn.running_var`), and the latent space Easel samples
in: the VAE's 32 channels patchified 2x2 into 128 channels at 1/16 of the image, normalised by
those statistics (what Flux2Pipeline does before and after its loop, and ComfyUI's Flux2
latent format). `Flux2LatentVae` wraps the autoencoder so that VAEEncode, VAEDecode and
previews see that space, with no scaling or shift left to apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from easel.models.errors import ModelError
from easel.models.families import ldm_shapes
from easel.models.families.flux2 import PATCH

BN_KEYS = ("bn.running_mean", "bn.running_var")


def is_flux2_vae(state: Any) -> bool:
    """Whether a VAE file's keys hold Flux.2's batch-norm statistics."""
    return all(key in state for key in BN_KEYS)


def patchify(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, 4C, h/2, w/2] (Flux2Pipeline's _patchify_latents)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * PATCH * PATCH, h // PATCH, w // PATCH)


def unpatchify(latents: torch.Tensor) -> torch.Tensor:
    """[B, 4C, h, w] -> [B, C, 2h, 2w] (Flux2Pipeline's _unpatchify_latents)."""
    b, c, h, w = latents.shape
    x = latents.reshape(b, c // (PATCH * PATCH), PATCH, PATCH, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // (PATCH * PATCH), h * PATCH, w * PATCH)


@dataclass(frozen=True)
class Flux2LatentConfig:
    """What Easel reads of a VAE's config (easel.models.handles.VaeHandle), for the Flux.2
    latent space: 4x the VAE's channels, a factor twice the autoencoder's (block_out_channels
    only counts levels: 2^(len - 1) is the factor), no scaling or shift."""

    latent_channels: int
    block_out_channels: tuple[int, ...]
    scaling_factor: float = 1.0
    shift_factor: float = 0.0


class Flux2LatentVae(torch.nn.Module):
    """An AutoencoderKLFlux2 seen in Easel's Flux.2 latent space: `encode` gives normalised
    patchified latents (as `.latents`), `decode` takes them; `config` describes that space
    (128 channels at 1/16) to the VAE handle."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae
        levels = len(vae.config.block_out_channels) + 1  # the 2x2 patches: one level more
        self.config = Flux2LatentConfig(
            latent_channels=int(vae.config.latent_channels) * PATCH * PATCH,
            block_out_channels=(1,) * levels,
        )

    def _statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps)
        return mean, std.to(like.device, like.dtype)

    def encode(self, images: torch.Tensor) -> Any:
        """Images in [-1, 1] -> normalised patchified latents (the posterior's mode, as
        Flux2Pipeline encodes reference images)."""
        latents = patchify(self.vae.encode(images).latent_dist.mode())
        mean, std = self._statistics(latents)
        return SimpleNamespace(latents=(latents - mean) / std)

    def decode(self, latents: torch.Tensor, return_dict: bool = True, **_: Any) -> Any:
        """Normalised patchified latents -> images in [-1, 1]."""
        mean, std = self._statistics(latents)
        image = self.vae.decode(unpatchify(latents * std + mean), return_dict=False)[0]
        return SimpleNamespace(sample=image) if return_dict else (image,)


def _quant_convs_beside(state: dict[str, Any]) -> dict[str, Any]:
    """Black Forest Labs' files keep the quant convs inside the encoder and decoder; diffusers'
    converter (and ComfyUI) want them beside."""
    moves = {"encoder.quant_conv.": "quant_conv.", "decoder.post_quant_conv.": "post_quant_conv."}
    out = {}
    for key, value in state.items():
        for old, new in moves.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value
    return out


def decoder_channels(state: dict[str, Any], levels: int) -> list[int]:
    """The decoder's width at each level (LDM keys `decoder.up.<level>`), highest resolution
    first, as diffusers' `decoder_block_out_channels`."""
    return [int(state[f"decoder.up.{i}.block.0.conv2.weight"].shape[0]) for i in range(levels)]


def autoencoder_config(state: dict[str, Any]) -> dict[str, Any]:
    """AutoencoderKLFlux2's config read off an LDM-layout state dict (quant convs beside):
    diffusers' config reader for the levels and widths, the decoder's own widths when they
    differ, the quant convs when present."""
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    original = {
        "model": {
            "params": {
                "scale_factor": 1.0,
                "first_stage_config": {"params": {"ddconfig": ldm_shapes.vae_ddconfig(state)}},
            }
        }
    }
    base = create_vae_diffusers_config_from_ldm(original, state)
    config = {
        key: base[key]
        for key in (
            "in_channels",
            "out_channels",
            "down_block_types",
            "up_block_types",
            "block_out_channels",
            "layers_per_block",
            "latent_channels",
        )
    }
    config["norm_num_groups"] = ldm_shapes.vae_norm_groups(state)
    decoder = decoder_channels(state, len(config["block_out_channels"]))
    if decoder != list(config["block_out_channels"]):  # a small decoder (ComfyUI's
        config["decoder_block_out_channels"] = decoder  # full_encoder_small_decoder)
    config["use_quant_conv"] = "quant_conv.weight" in state
    config["use_post_quant_conv"] = "post_quant_conv.weight" in state
    channels = int(state["bn.running_mean"].shape[0])
    if channels != int(config["latent_channels"]) * PATCH * PATCH:
        raise ModelError(
            f"its batch-norm statistics have {channels} channels, not the "
            f"{config['latent_channels']} latent channels patchified 2x2"
        )
    return config


def load_flux2_vae(path: Path, state: dict[str, Any], dtype: Any) -> Flux2LatentVae:
    """A Flux2LatentVae from a Flux.2 VAE file's state dict: diffusers' LDM converter and
    config reader for the autoencoder, the batch-norm statistics as they are."""
    from diffusers import AutoencoderKLFlux2
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from easel.models.state_dicts import load_into

    state = _quant_convs_beside(state)
    try:
        config = autoencoder_config(state)
        converted = convert_ldm_vae_checkpoint(state, config)
        converted.update({key: state[key] for key in BN_KEYS})
        converted["bn.num_batches_tracked"] = state.get(
            "bn.num_batches_tracked", torch.tensor(0, dtype=torch.long)
        )
        vae = load_into(AutoencoderKLFlux2, config, converted, dtype, "Flux.2 VAE", strict=False)
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    except (RuntimeError, ValueError, KeyError, AssertionError) as exc:
        raise ModelError(
            f"{path.name} looks like a Flux.2 VAE but does not fit that architecture "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return Flux2LatentVae(vae).eval().requires_grad_(False)
