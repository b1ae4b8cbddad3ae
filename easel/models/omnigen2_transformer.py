"""OmniGen2's diffusion transformer, built from diffusers' Lumina 2 pieces.

No library has OmniGen2 (diffusers 0.42.1 has OmniGen v1, a different model), so the model is
assembled here. Its blocks are Lumina-Image 2.0's, the same computation with the same weight
names (GQA attention with per-head RMSNorm on q and k, RMSNorm-zero modulation with tanh gates,
SwiGLU feed-forward): they are diffusers' `Lumina2TransformerBlock`, as are the timestep and
caption embedder and the output norm (`Lumina2CombinedTimestepCaptionEmbedding`, its timestep
projection scaled by 1000 as OmniGen2's is, and `LuminaLayerNormContinuous`). What is written
here is what OmniGen2 adds (following ComfyUI's `comfy/ldm/omnigen/omnigen2.py`):

- reference images: a patch embedder of their own, one learned `image_index_embedding` row
  added to each image's tokens, and refiner blocks (`ref_image_refiner`) over all of them;
- the RoPE positions (`position_ids`): caption tokens at (i, i, i); each reference image on a
  frame of its own (its frame index on the first axis, rows and columns on the others), the
  next frame `max(rows, columns)` further on; the target image last, on the next frame;
- the forward: caption through `context_refiner` (unmodulated), target through
  `noise_refiner`, references through `ref_image_refiner`, then [caption; references; image]
  through the main `layers`, the output norm, and the image's tokens unpatched.

Timesteps run as OmniGen2's do (0 is noise, 1 the image) and the output is its prediction as
the model gives it; easel.models.omnigen2_denoiser turns both into the sampler's convention.
Captions are never padded (each conditioning is its own call), so no attention mask is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import Timesteps, get_1d_rotary_pos_embed
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import LuminaLayerNormContinuous
from diffusers.models.transformers.transformer_lumina2 import (
    Lumina2CombinedTimestepCaptionEmbedding,
    Lumina2TransformerBlock,
)
from torch import nn

FREQUENCY_CHANNELS = 256  # the timestep projection's width (Lumina 2's and OmniGen2's)


def position_ids(
    caption_len: int, references: Sequence[tuple[int, int]], image: tuple[int, int]
) -> Any:
    """OmniGen2's RoPE positions [caption + references + image tokens, 3] (int64): caption
    token i at (i, i, i); reference image k (rows x columns of patches, row-major) at
    (frame_k, row, column) with frame_0 = caption_len and frame_{k+1} = frame_k + max(rows_k,
    columns_k); the target image at (the next frame, row, column)."""
    pieces = [torch.arange(caption_len, dtype=torch.int64)[:, None].expand(-1, 3)]
    frame = caption_len
    for rows, cols in [*references, image]:
        grid = torch.stack(
            torch.meshgrid(
                torch.arange(rows, dtype=torch.int64),
                torch.arange(cols, dtype=torch.int64),
                indexing="ij",
            ),
            dim=-1,
        ).reshape(-1, 2)
        pieces.append(torch.cat([torch.full((rows * cols, 1), frame), grid], dim=1))
        frame += max(rows, cols)
    return torch.cat(pieces, dim=0)


def rotary_frequencies(ids: Any, axes_dim: Sequence[int], theta: float) -> Any:
    """Complex RoPE factors [L, sum(axes_dim) / 2] for positions `ids` [L, 3]: each axis's
    frequencies from diffusers' `get_1d_rotary_pos_embed` (float64), concatenated."""
    parts = [
        get_1d_rotary_pos_embed(
            dim, ids[:, axis].to(torch.float64), theta=theta, freqs_dtype=torch.float64
        )
        for axis, dim in enumerate(axes_dim)
    ]
    return torch.cat(parts, dim=-1)


def patchify(latent: Any, patch: int) -> Any:
    """[B, C, H, W] -> [B, (H/p)(W/p), p*p*C] tokens (rows of patches, each p, p, C)."""
    b, c, h, w = latent.shape
    return (
        latent.view(b, c, h // patch, patch, w // patch, patch)
        .permute(0, 2, 4, 3, 5, 1)
        .reshape(b, (h // patch) * (w // patch), patch * patch * c)
    )


def unpatchify(tokens: Any, height: int, width: int, patch: int) -> Any:
    """The inverse of `patchify` for a [B, (H/p)(W/p), p*p*C] token grid."""
    b, _, inner = tokens.shape
    c = inner // (patch * patch)
    return (
        tokens.view(b, height // patch, width // patch, patch, patch, c)
        .permute(0, 5, 1, 3, 2, 4)
        .reshape(b, c, height, width)
    )


def pad_to_patches(latent: Any, patch: int) -> Any:
    """`latent` padded (circularly, as ComfyUI pads) to whole patches."""
    pad_h, pad_w = -latent.shape[-2] % patch, -latent.shape[-1] % patch
    if not (pad_h or pad_w):
        return latent
    return nn.functional.pad(latent, (0, pad_w, 0, pad_h), mode="circular")


def lumina_blocks(
    count: int,
    dim: int,
    heads: int,
    kv_heads: int,
    multiple_of: int,
    ffn_dim_multiplier: float | None,
    norm_eps: float,
    modulation: bool = True,
) -> nn.ModuleList:
    """`count` of diffusers' Lumina2TransformerBlock (OmniGen2's block)."""
    return nn.ModuleList(
        Lumina2TransformerBlock(
            dim,
            heads,
            kv_heads,
            multiple_of,
            ffn_dim_multiplier,  # type: ignore[arg-type]
            norm_eps,
            modulation=modulation,
        )
        for _ in range(count)
    )


@dataclass
class Prepared:
    """What OmniGen2's embedders and refiners make of one call's inputs: the caption and the
    [references; image] tokens (each refined), the RoPE factors over [caption; references;
    image], the timestep embedding, and the sizes to unpatch the output to."""

    caption: Any
    tokens: Any
    freqs: Any
    temb: Any
    height: int
    width: int
    padded: tuple[int, int]


class OmniGen2Stages:
    """OmniGen2's input stages (embedders, refiners, RoPE) and output stage, shared by OmniGen2
    and its derivative Boogu (easel.models.boogu_transformer), which differ in their main
    blocks only; a mixin of their torch modules (which set `config` and the module machinery)."""

    def build_stages(self) -> Callable[..., nn.ModuleList]:
        """The input and output stages built from the model's config (register_to_config
        records it before `__init__`'s body runs); returns `blocks(count, modulation=True)`,
        the builder of Lumina 2 blocks of this width, for the subclass's main blocks."""
        config: Any = getattr(self, "config")  # noqa: B009  (ConfigMixin's, on the subclass)
        patch_size, in_channels = int(config.patch_size), int(config.in_channels)
        hidden_size, norm_eps = int(config.hidden_size), float(config.norm_eps)

        def blocks(count: int, modulation: bool = True) -> nn.ModuleList:
            return lumina_blocks(
                count,
                hidden_size,
                config.num_attention_heads,
                config.num_kv_heads,
                config.multiple_of,
                config.ffn_dim_multiplier,
                norm_eps,
                modulation,
            )

        out = config.out_channels or in_channels
        patch_in = patch_size * patch_size * in_channels
        self.x_embedder = nn.Linear(patch_in, hidden_size)
        self.ref_image_patch_embedder = nn.Linear(patch_in, hidden_size)
        self.time_caption_embed = Lumina2CombinedTimestepCaptionEmbedding(
            hidden_size=hidden_size,
            cap_feat_dim=config.text_feat_dim,
            frequency_embedding_size=FREQUENCY_CHANNELS,
            norm_eps=norm_eps,
        )
        # OmniGen2 scales its timestep projection (diffusers' Lumina 2 does not)
        self.time_caption_embed.time_proj = Timesteps(
            FREQUENCY_CHANNELS,
            flip_sin_to_cos=True,
            downscale_freq_shift=0.0,
            scale=config.timestep_scale,  # type: ignore[arg-type]  # annotated int, used as a factor
        )
        self.noise_refiner = blocks(config.num_refiner_layers)
        self.ref_image_refiner = blocks(config.num_refiner_layers)
        self.context_refiner = blocks(config.num_refiner_layers, modulation=False)
        self.norm_out = LuminaLayerNormContinuous(
            embedding_dim=hidden_size,
            conditioning_embedding_dim=min(hidden_size, 1024),
            elementwise_affine=False,
            eps=1e-6,
            bias=True,
            out_dim=patch_size * patch_size * out,
        )
        self.image_index_embedding = nn.Parameter(
            torch.zeros(config.max_references, hidden_size)
        )
        return blocks

    def prepare(
        self,
        hidden_states: Any,
        timestep: Any,
        encoder_hidden_states: Any,
        ref_latents: Sequence[Any] = (),
    ) -> Prepared:
        """Latents `hidden_states` [B, C, H, W] at OmniGen2's `timestep` [B] (0 noise, 1
        image), caption `encoder_hidden_states` [B, T, D] (every token real) and reference
        latents (each [B, C, h, w], in order) through the embedders and refiners."""
        config: Any = getattr(self, "config")  # noqa: B009  (ConfigMixin's, on the subclass)
        patch = int(config.patch_size)
        if len(ref_latents) > int(config.max_references):
            raise ValueError(
                f"{len(ref_latents)} reference images; this model takes at most "
                f"{config.max_references}"
            )
        batch, _, height, width = hidden_states.shape
        image = pad_to_patches(hidden_states, patch)
        padded_h, padded_w = image.shape[-2:]
        refs = [pad_to_patches(ref, patch) for ref in ref_latents]

        temb, caption = self.time_caption_embed(image, timestep, encoder_hidden_states)
        ids = position_ids(
            caption.shape[1],
            [(r.shape[-2] // patch, r.shape[-1] // patch) for r in refs],
            (padded_h // patch, padded_w // patch),
        )
        freqs = rotary_frequencies(ids, config.axes_dim_rope, config.rope_theta)
        freqs = freqs.to(image.device)[None].expand(batch, -1, -1)
        cap_len = caption.shape[1]
        ref_len = sum((r.shape[-2] // patch) * (r.shape[-1] // patch) for r in refs)

        for block in self.context_refiner:
            caption = block(caption, None, freqs[:, :cap_len])

        tokens = self.x_embedder(patchify(image, patch))
        for block in self.noise_refiner:
            tokens = block(tokens, None, freqs[:, cap_len + ref_len :], temb)
        if refs:
            embedded = []
            for index, ref in enumerate(refs):
                ref_tokens = self.ref_image_patch_embedder(patchify(ref, patch))
                embedded.append(ref_tokens + self.image_index_embedding[index].to(ref_tokens))
            ref_tokens = torch.cat(embedded, dim=1)
            for block in self.ref_image_refiner:
                ref_tokens = block(ref_tokens, None, freqs[:, cap_len : cap_len + ref_len], temb)
            tokens = torch.cat([ref_tokens, tokens], dim=1)
        return Prepared(caption, tokens, freqs, temb, height, width, (padded_h, padded_w))

    def finish(self, joint: Any, prepared: Prepared) -> Any:
        """The output norm over [caption; references; image], the image's tokens unpatched
        and cropped back to the latent's size."""
        patch = int(getattr(self, "config").patch_size)  # noqa: B009
        padded_h, padded_w = prepared.padded
        joint = self.norm_out(joint, prepared.temb)
        image_len = (padded_h // patch) * (padded_w // patch)
        out = unpatchify(joint[:, -image_len:], padded_h, padded_w, patch)
        return out[:, :, : prepared.height, : prepared.width]


class OmniGen2Transformer(OmniGen2Stages, ModelMixin, ConfigMixin):  # type: ignore[misc]
    """OmniGen2Transformer2DModel's computation and weight names (ComfyUI's file layout)."""

    @register_to_config
    def __init__(
        self,
        patch_size: int = 2,
        in_channels: int = 16,
        out_channels: int | None = None,
        hidden_size: int = 2520,
        num_layers: int = 32,
        num_refiner_layers: int = 2,
        num_attention_heads: int = 21,
        num_kv_heads: int = 7,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        norm_eps: float = 1e-5,
        axes_dim_rope: Sequence[int] = (40, 40, 40),
        text_feat_dim: int = 2048,
        timestep_scale: float = 1000.0,
        rope_theta: float = 10000,
        max_references: int = 5,
    ) -> None:
        super().__init__()
        blocks = self.build_stages()
        self.layers = blocks(num_layers)

    def forward(
        self,
        hidden_states: Any,
        timestep: Any,
        encoder_hidden_states: Any,
        ref_latents: Sequence[Any] = (),
    ) -> Any:
        """The prediction [B, C, H, W] for latents `hidden_states` [B, C, H, W] at OmniGen2's
        `timestep` [B] (0 noise, 1 image), caption `encoder_hidden_states` [B, T, D] (every
        token real) and reference latents (each [B, C, h, w], in order)."""
        prepared = self.prepare(hidden_states, timestep, encoder_hidden_states, ref_latents)
        joint = torch.cat([prepared.caption, prepared.tokens], dim=1)
        for block in self.layers:
            joint = block(joint, None, prepared.freqs, prepared.temb)
        return self.finish(joint, prepared)
