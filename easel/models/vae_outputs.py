"""What Easel's wrappers of diffusers' video VAEs share: they take and give 4-D images and
latents (one frame), so VAEDecode, VAEEncode and the latent preview use them as they use an
AutoencoderKL, and they answer `encode` / `decode` with the small objects diffusers' own
outputs are read through (`.latent_dist.mode()`, `.sample`).

`OneFrameVae` is their torch.nn.Module base (torch is imported when this module is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class NormalisedVaeConfig:
    """What Easel reads of the config of a VAE whose latents are normalised per channel
    (easel.models.handles.VaeHandle): `block_out_channels` only counts levels (2^(len - 1) is
    the spatial factor), the scalar scaling is 1 and the shift 0."""

    latent_channels: int
    block_out_channels: tuple[int, ...]
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    latents_mean: list[float] = field(default_factory=list)
    latents_std: list[float] = field(default_factory=list)


@dataclass
class Posterior:
    """The encoded latents as diffusers' posterior is read (mode / sample)."""

    latents: Any

    def mode(self) -> Any:
        return self.latents

    def sample(self, generator: Any = None) -> Any:
        return self.latents


@dataclass
class Encoded:
    latent_dist: Posterior


@dataclass
class Decoded:
    sample: Any


def encoded(latents: Any, return_dict: bool) -> Any:
    """What `encode` returns for `latents`: an Encoded, or diffusers' tuple form."""
    output = Encoded(Posterior(latents))
    return output if return_dict else (output.latent_dist,)


def decoded(image: Any, return_dict: bool) -> Any:
    """What `decode` returns for `image`: a Decoded, or diffusers' tuple form."""
    return (image,) if not return_dict else Decoded(image)


def frames_as_images(latents: Any) -> Any:
    """A 5-D latent [B, C, F, h, w] as B * F one-frame latents [B * F, C, h, w], batch-major
    (as ComfyUI's VAEDecode gives a video's frames); a 4-D latent as it is."""
    if latents.dim() != 5:
        return latents
    return latents.movedim(2, 1).reshape(-1, *latents.shape[1:2], *latents.shape[3:])


def per_channel(values: Sequence[float], like: Any, shape: tuple[int, ...]) -> Any:
    """`values` (a latent's per-channel mean or std, pixel statistics) as a tensor of `shape`
    on `like`'s device and dtype, to broadcast over a latent or image batch."""
    return torch.tensor(values).view(shape).to(like.device, like.dtype)


class OneFrameVae(torch.nn.Module):
    """The base of the one-frame VAE wrappers: `forward` encodes and decodes (the posterior's
    mode) through the subclass's `encode` / `decode`."""

    def forward(self, images: Any) -> Any:
        vae: Any = self  # encode / decode are the subclass's
        return vae.decode(vae.encode(images).latent_dist.mode(), return_dict=False)[0]
