"""Handles that nodes pass along MODEL, CLIP, VAE, PRIOR and UPSCALE_MODEL links.

A handle points at modules owned by the model manager: it is never copied, and the output
cache counts it as zero bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from easel.core.cache import sizeof


@dataclass(eq=False)
class ModelHandle:
    """A denoising UNet with its scheduler config; `conditioning` is "text" or "image"."""

    name: str
    unet: Any
    scheduler_config: dict[str, Any]
    vae_scale_factor: int
    manager: Any
    vae: Any = None  # the checkpoint's VAE, used to fit the cheap latent preview
    preview_matrix: Any = field(default=None, repr=False)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def conditioning(self) -> str:
        config = self.unet.config
        if (getattr(config, "addition_embed_type", None) == "image"
                or getattr(config, "encoder_hid_dim_type", None) == "image_proj"):
            return "image"
        return "text"


@dataclass(eq=False)
class ClipHandle:
    """A CLIP text tower and tokenizer; `vision` is set when the full CLIP model is loaded."""

    name: str
    tokenizer: Any
    text_model: Any
    manager: Any
    text_projection: Any = None
    vision: Any = None  # a transformers CLIPModel (both towers) for CLIPScore
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    empty_cache: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(eq=False)
class VaeHandle:
    """An autoencoder (AutoencoderKL or VQModel) and its latent scaling."""

    name: str
    vae: Any
    manager: Any

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", None) or 1.0)

    @property
    def shift_factor(self) -> float:
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)


@dataclass(eq=False)
class PriorHandle:
    """An unCLIP prior (diffusers PriorTransformer) and its scheduler config."""

    name: str
    prior: Any
    scheduler_class: str
    scheduler_config: dict[str, Any]
    manager: Any


@dataclass(eq=False)
class UpscalerHandle:
    """A pixel-space diffusion super-resolution UNet2DModel that takes the upsampled low-res
    image concatenated to its noisy input."""

    name: str
    unet: Any
    scheduler_class: str
    scheduler_config: dict[str, Any]
    factor: int
    manager: Any
    upsample: str = "bicubic"
    info: dict[str, Any] = field(default_factory=dict)


HANDLE_TYPES = (ModelHandle, ClipHandle, VaeHandle, PriorHandle, UpscalerHandle)

for _handle in HANDLE_TYPES:
    sizeof.register(_handle)(lambda value: 0)
