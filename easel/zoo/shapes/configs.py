"""Architectures and training budgets of the easel-shapes family, full size and tiny (tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NATIVE_SIZE = 32
LATENT_CHANNELS = 4
VAE_SCALE_FACTOR = 4
MAX_TOKENS = 32


@dataclass(frozen=True)
class StageBudget:
    """How one stage trains: steps, batch, learning rate, and a warm-up."""

    steps: int
    batch_size: int
    lr: float
    warmup: int = 100


@dataclass(frozen=True)
class FamilyConfig:
    """Model sizes and budgets for every stage; the defaults are the shipped model."""

    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_groups: int = 8
    clip_width: int = 128
    clip_layers: int = 3
    clip_heads: int = 4
    clip_patch: int = 8
    unet_channels: tuple[int, ...] = (64, 96, 96)
    unet_layers_per_block: int = 1
    unet_heads: int = 4
    unet_groups: int = 32
    prior_layers: int = 4
    prior_heads: int = 4
    upscaler_channels: tuple[int, ...] = (32, 64, 64)
    upscaler_groups: int = 16
    budgets: dict[str, StageBudget] = field(
        default_factory=lambda: {
            "vae": StageBudget(steps=2500, batch_size=32, lr=1e-3),
            "clip": StageBudget(steps=800, batch_size=128, lr=1e-3),
            "unet": StageBudget(steps=7500, batch_size=32, lr=5e-4),
            "prior": StageBudget(steps=1000, batch_size=128, lr=5e-4),
            "decoder": StageBudget(steps=1500, batch_size=32, lr=3e-4),
            "upscaler": StageBudget(steps=3000, batch_size=8, lr=5e-4),
        }
    )

    @classmethod
    def tiny(cls) -> FamilyConfig:
        """Models with a few thousand parameters, for tests that train two steps."""
        return cls(
            vae_channels=(8, 8, 8),
            vae_groups=4,
            clip_width=16,
            clip_layers=1,
            clip_heads=2,
            unet_channels=(8, 8, 8),
            unet_heads=2,
            unet_groups=4,
            prior_layers=1,
            prior_heads=2,
            upscaler_channels=(8, 8, 8),
            upscaler_groups=4,
            budgets={
                name: StageBudget(steps=2, batch_size=4, lr=1e-3, warmup=1)
                for name in ("vae", "clip", "unet", "prior", "decoder", "upscaler")
            },
        )

    def vae_kwargs(self) -> dict[str, Any]:
        n = len(self.vae_channels)
        return {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ("DownEncoderBlock2D",) * n,
            "up_block_types": ("UpDecoderBlock2D",) * n,
            "block_out_channels": self.vae_channels,
            "layers_per_block": 1,
            "latent_channels": LATENT_CHANNELS,
            "norm_num_groups": self.vae_groups,
            "sample_size": NATIVE_SIZE,
        }

    def clip_kwargs(self, vocab_size: int, bos_id: int, eos_id: int, pad_id: int) -> dict[str, Any]:
        width = self.clip_width
        return {
            "text_config": {
                "vocab_size": vocab_size,
                "hidden_size": width,
                "intermediate_size": 4 * width,
                "num_hidden_layers": self.clip_layers,
                "num_attention_heads": self.clip_heads,
                "max_position_embeddings": MAX_TOKENS,
                "projection_dim": width,
                "bos_token_id": bos_id,
                "eos_token_id": eos_id,
                "pad_token_id": pad_id,
            },
            "vision_config": {
                "hidden_size": width,
                "intermediate_size": 4 * width,
                "num_hidden_layers": self.clip_layers,
                "num_attention_heads": self.clip_heads,
                "image_size": NATIVE_SIZE,
                "patch_size": self.clip_patch,
                "projection_dim": width,
            },
            "projection_dim": width,
        }

    def _unet_common(self) -> dict[str, Any]:
        n = len(self.unet_channels)
        return {
            "sample_size": NATIVE_SIZE // VAE_SCALE_FACTOR,
            "in_channels": LATENT_CHANNELS,
            "out_channels": LATENT_CHANNELS,
            # Three levels (8x8 -> 4x4 -> 2x2): at 2x2 every cell touches the zero padding on
            # its own sides, so the coarse level knows left from right and top from bottom,
            # and cross-attention there can place the object where the caption says.
            "down_block_types": ("CrossAttnDownBlock2D",) * n,
            "up_block_types": ("CrossAttnUpBlock2D",) * n,
            "block_out_channels": self.unet_channels,
            "layers_per_block": self.unet_layers_per_block,
            "attention_head_dim": self.unet_heads,
            "cross_attention_dim": self.clip_width,
            "norm_num_groups": self.unet_groups,
        }

    def unet_kwargs(self) -> dict[str, Any]:
        # addition_embed_type="text" pools the caption into the time embedding, so global
        # attributes (background, colour) condition every ResNet, not only the attention.
        return {
            **self._unet_common(),
            "addition_embed_type": "text",
            "addition_embed_type_num_heads": self.unet_heads,
        }

    def decoder_kwargs(self) -> dict[str, Any]:
        # Kandinsky 2.2 style: the CLIP image embedding is projected to cross-attention
        # tokens and also added to the time embedding.
        return {
            **self._unet_common(),
            "encoder_hid_dim": self.clip_width,
            "encoder_hid_dim_type": "image_proj",
            "addition_embed_type": "image",
        }

    def prior_kwargs(self) -> dict[str, Any]:
        heads = self.prior_heads
        return {
            "num_attention_heads": heads,
            "attention_head_dim": self.clip_width // heads,
            "num_layers": self.prior_layers,
            "embedding_dim": self.clip_width,
            "num_embeddings": MAX_TOKENS,
            "additional_embeddings": 4,
        }

    def upscaler_kwargs(self) -> dict[str, Any]:
        n = len(self.upscaler_channels)
        return {
            "sample_size": 2 * NATIVE_SIZE,
            "in_channels": 6,  # the noisy high-res image + the upsampled low-res image
            "out_channels": 3,
            "down_block_types": ("DownBlock2D",) * n,
            "up_block_types": ("UpBlock2D",) * n,
            "block_out_channels": self.upscaler_channels,
            "layers_per_block": 1,
            "norm_num_groups": self.upscaler_groups,
        }


def latent_scheduler_config() -> dict[str, Any]:
    """Stable Diffusion's noise schedule; clip_sample=False (True ruins DDIM on latents)."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "timestep_spacing": "trailing",
    }


UPSCALER_UPSAMPLE = "bilinear"  # how the upscaler's low-res condition is resized


def pixel_scheduler_config() -> dict[str, Any]:
    """Cosine schedule for the pixel-space upscaler, v-prediction.

    With epsilon prediction the first steps (alpha_bar near 0) divide the model's error by
    sqrt(alpha_bar) and sampling never recovers (4 dB PSNR after 1500 steps, though one-step
    denoising was good); v-prediction predicts the image itself there, as Imagen's SR stages do.
    """
    return {
        "num_train_timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "v_prediction",
        "clip_sample": False,
        "timestep_spacing": "trailing",
    }


def prior_scheduler_config() -> dict[str, Any]:
    """The prior predicts the clean (normalised) image embedding, as in DALL-E 2."""
    return {
        "num_train_timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "sample",
        "clip_sample": False,
        "timestep_spacing": "trailing",
    }
