"""Mage-Flow's transformer (MageFlowTransformer2DModel), built from diffusers' Qwen-Image pieces.

No library has Mage-Flow (diffusers 0.42 and transformers have no class for it), so the forward
and the RoPE are written here; every layer is diffusers' own: QwenImageTransformerBlock (the
double-stream block, its attention processor and RoPE application), TimestepEmbedding,
AdaLayerNormContinuous and RMSNorm, under Qwen-Image's module names, so ComfyUI's file keys
load as they are. What differs from diffusers' QwenImageTransformer2DModel (ComfyUI's
comfy/ldm/mage_flow/model.py):

- patch size 1: one token per latent pixel, [B, C, h, w] -> [B, h*w, C], no 2x2 packing;
- text tokens are not rotated (RoPE position 0, the identity);
- image positions (frame, row, column): the frame is the image's index (0 the image made,
  1..N the reference images, their tokens after the image's), rows and columns centred as
  [-ceil(n/2), floor(n/2));
- the timestep frequency table and the noise level are rounded to bf16 before use, whatever
  the model's dtype (`timestep_dtype`): Mage was trained in bf16 and ComfyUI's Mage-Flow
  model keeps that rounding (its model_base casts the timestep to bf16; an earlier version of
  its model.py rounded to the model's dtype instead). The products are float32; with
  `timestep_dtype` "float32" the table is diffusers' own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormContinuous, RMSNorm
from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock
from torch import nn

FREQUENCIES = 256  # the timestep's sinusoidal embedding width
MAX_PERIOD = 10000


def timestep_frequencies(sigma: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B] noise levels in [0, 1] -> [B, 256]: (cos, sin) of 1000 * sigma * f_k with
    f_k = exp(-ln(10000) k / 128), sigma and the table f rounded to `dtype` first (Mage's
    recipe), the products in float32."""
    half = FREQUENCIES // 2
    exponent = -math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32) / half
    table = torch.exp(exponent).to(sigma.device).to(dtype)
    angles = 1000.0 * (sigma.to(dtype).float()[:, None] * table.float()[None, :])
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class MageTimestepEmbedding(nn.Module):
    """`timestep_embedder` (diffusers' TimestepEmbedding: linear, SiLU, linear) over Mage's
    frequency table; named as Qwen-Image's `time_text_embed`."""

    def __init__(self, embedding_dim: int, rounding: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(FREQUENCIES, embedding_dim)
        self.rounding = rounding

    def forward(self, sigma: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.timestep_embedder(timestep_frequencies(sigma, self.rounding).to(dtype))


def axis_positions(size: int) -> torch.Tensor:
    """Mage's centred positions along one axis of `size`: [-ceil(n/2), floor(n/2))."""
    return torch.arange(size, dtype=torch.float64) - (size - size // 2)


def image_positions(index: int, height: int, width: int) -> torch.Tensor:
    """(frame, row, column) of each token of an h x w latent, row-major: [h*w, 3]."""
    rows = axis_positions(height)[:, None].expand(height, width)
    cols = axis_positions(width)[None, :].expand(height, width)
    frame = torch.full((height, width), float(index), dtype=torch.float64)
    return torch.stack([frame, rows, cols], dim=-1).reshape(height * width, 3)


def rotations(positions: torch.Tensor, axes: Sequence[int], theta: float) -> torch.Tensor:
    """Complex rotations [N, head / 2] of `positions` [N, len(axes)]: per axis of width d,
    angle = position * theta^(-2j/d), j < d/2, the axes side by side (what diffusers'
    apply_rotary_emb_qwen takes, pairs of adjacent channels rotated)."""
    parts = []
    for axis, dim in enumerate(axes):
        inverse = 1.0 / torch.pow(
            float(theta), torch.arange(0, dim, 2, dtype=torch.float64) / dim
        )
        angles = positions[:, axis : axis + 1] * inverse[None, :]
        parts.append(torch.polar(torch.ones_like(angles), angles))
    return torch.cat(parts, dim=-1).to(torch.complex64)


class MageFlowTransformer2DModel(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """Mage-Flow's native-resolution MMDiT. `forward` takes latents [B, C, h, w], the text's
    hidden states [B, T, D], the noise level sigma [B] and reference latents, and returns the
    velocity [B, C, h, w]."""

    _no_split_modules = ["QwenImageTransformerBlock"]  # type: ignore[assignment]  # noqa: RUF012
    _skip_layerwise_casting_patterns = ["norm"]  # type: ignore[assignment]  # noqa: RUF012

    @register_to_config
    def __init__(
        self,
        in_channels: int = 128,
        out_channels: int = 128,
        num_layers: int = 12,
        attention_head_dim: int = 128,
        num_attention_heads: int = 24,
        joint_attention_dim: int = 2560,
        axes_dims_rope: tuple[int, int, int] = (16, 56, 56),
        rope_theta: int = 10000,
        timestep_dtype: str = "bfloat16",
    ) -> None:
        super().__init__()
        inner = num_attention_heads * attention_head_dim
        if sum(axes_dims_rope) != attention_head_dim:
            raise ValueError(
                f"rope axes {axes_dims_rope} do not sum to the head {attention_head_dim}"
            )
        rounding = getattr(torch, timestep_dtype, None)
        if not isinstance(rounding, torch.dtype) or not rounding.is_floating_point:
            raise ValueError(f"timestep_dtype {timestep_dtype!r} is not a torch float dtype")
        self.time_text_embed = MageTimestepEmbedding(inner, rounding)
        self.txt_norm = RMSNorm(joint_attention_dim, eps=1e-6)
        self.img_in = nn.Linear(in_channels, inner)
        self.txt_in = nn.Linear(joint_attention_dim, inner)
        self.transformer_blocks = nn.ModuleList(
            QwenImageTransformerBlock(inner, num_attention_heads, attention_head_dim, eps=1e-6)
            for _ in range(num_layers)
        )
        self.norm_out = AdaLayerNormContinuous(inner, inner, elementwise_affine=False, eps=1e-6)
        self.proj_out = nn.Linear(inner, out_channels, bias=True)

    def rope(
        self, shapes: Sequence[tuple[int, int]], text_length: int, device: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(image rotations, text rotations): the image made is `shapes[0]` (frame 0), the
        reference images follow (frames 1..N); the text is at position 0 (no rotation)."""
        positions = torch.cat([image_positions(i, h, w) for i, (h, w) in enumerate(shapes)])
        config: Any = self.config
        axes, theta = config.axes_dims_rope, config.rope_theta
        image = rotations(positions, axes, theta).to(device)
        text = rotations(torch.zeros(text_length, 3, dtype=torch.float64), axes, theta)
        return image, text.to(device)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        reference_latents: Sequence[torch.Tensor] = (),
        encoder_hidden_states_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, _, height, width = hidden_states.shape
        shapes = [(height, width)]
        tokens = [hidden_states.flatten(2).transpose(1, 2)]
        for reference in reference_latents:
            shapes.append((int(reference.shape[-2]), int(reference.shape[-1])))
            tokens.append(reference.flatten(2).transpose(1, 2))
        image = self.img_in(torch.cat(tokens, dim=1))
        text = self.txt_in(self.txt_norm(encoder_hidden_states))
        temb = self.time_text_embed(timestep, image.dtype)
        rotary = self.rope(shapes, text.shape[1], image.device)
        for block in self.transformer_blocks:
            text, image = block(
                hidden_states=image,
                encoder_hidden_states=text,
                encoder_hidden_states_mask=encoder_hidden_states_mask,
                temb=temb,
                image_rotary_emb=rotary,
            )
        out = self.proj_out(self.norm_out(image[:, : height * width], temb))
        return out.transpose(1, 2).reshape(batch, -1, height, width)
