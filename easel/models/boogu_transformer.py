"""Boogu-Image's diffusion transformer: OmniGen2's (easel.models.omnigen2_transformer) with a
dual-stream stage before its single-stream blocks.

No library has Boogu. Its input and output stages are OmniGen2's (`OmniGen2Stages`), its
single-stream blocks are diffusers' `Lumina2TransformerBlock` (`single_stream_layers`), and its
dual-stream block is assembled here from diffusers' pieces (`LuminaRMSNormZero`, `RMSNorm`,
`LuminaFeedForward`, an `Attention` with Lumina 2's processor for the image's self-attention),
written from ComfyUI's `comfy/ldm/boogu/model.py` where no library piece computes the same:

- the joint attention: caption and image tokens ([references; image]) each projected by their
  own q / k / v, normed per head (shared RMSNorms), rotated by the RoPE over [caption;
  references; image], attending together (grouped-query), then each part through its own
  output projection and both through a shared one;
- the block: five RMSNorm-zero modulations (image: joint attention, feed-forward with a shift,
  self-attention; caption: joint attention, feed-forward with a shift), each output normed and
  added through a tanh gate; the feed-forward input is `(1 + scale) * norm(x) + shift`, normed.

The single-stream blocks then see [caption; references; image] as OmniGen2's main blocks do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import LuminaFeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import LuminaRMSNormZero, RMSNorm
from diffusers.models.transformers.transformer_lumina2 import Lumina2AttnProcessor2_0
from torch import nn

from easel.models.omnigen2_transformer import OmniGen2Stages


class StreamProjections(nn.Module):
    """The joint attention's per-stream projections (ComfyUI's `processor` weights)."""

    def __init__(self, dim: int, head_dim: int, heads: int, kv_heads: int) -> None:
        super().__init__()
        inner, kv = head_dim * heads, head_dim * kv_heads
        self.img_to_q = nn.Linear(dim, inner, bias=False)
        self.img_to_k = nn.Linear(dim, kv, bias=False)
        self.img_to_v = nn.Linear(dim, kv, bias=False)
        self.instruct_to_q = nn.Linear(dim, inner, bias=False)
        self.instruct_to_k = nn.Linear(dim, kv, bias=False)
        self.instruct_to_v = nn.Linear(dim, kv, bias=False)
        self.instruct_out = nn.Linear(inner, inner, bias=False)
        self.img_out = nn.Linear(inner, inner, bias=False)


class JointAttention(nn.Module):
    """Attention over [caption; image] with per-stream projections (see the module's text)."""

    def __init__(self, dim: int, heads: int, kv_heads: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.norm_q = RMSNorm(self.head_dim, eps=eps)
        self.norm_k = RMSNorm(self.head_dim, eps=eps)
        self.to_out = nn.ModuleList([nn.Linear(heads * self.head_dim, dim, bias=False)])
        self.processor = StreamProjections(dim, self.head_dim, heads, kv_heads)

    def forward(self, image: Any, caption: Any, freqs: Any) -> Any:
        p = self.processor
        batch, caption_len = caption.shape[0], caption.shape[1]

        def heads(instruct: Any, img: Any, count: int) -> Any:
            return torch.cat([instruct, img], dim=1).view(batch, -1, count, self.head_dim)

        query = heads(p.instruct_to_q(caption), p.img_to_q(image), self.heads)
        key = heads(p.instruct_to_k(caption), p.img_to_k(image), self.kv_heads)
        value = heads(p.instruct_to_v(caption), p.img_to_v(image), self.kv_heads)
        dtype = query.dtype
        rotate: Any = apply_rotary_emb  # complex factors: one tensor back (typed as a pair)
        query = rotate(self.norm_q(query), freqs, use_real=False).to(dtype)
        key = rotate(self.norm_k(key), freqs, use_real=False).to(dtype)
        repeat = self.heads // self.kv_heads
        key = key.repeat_interleave(repeat, dim=2)
        value = value.repeat_interleave(repeat, dim=2)
        out = nn.functional.scaled_dot_product_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        )
        out = out.transpose(1, 2).reshape(batch, -1, self.heads * self.head_dim)
        out = torch.cat([p.instruct_out(out[:, :caption_len]), p.img_out(out[:, caption_len:])], 1)
        return self.to_out[0](out)


class DoubleStreamBlock(nn.Module):
    """Boogu's dual-stream block (ComfyUI's BooguDoubleStreamBlock weight names)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_heads: int,
        multiple_of: int,
        ffn_dim_multiplier: float | None,
        norm_eps: float,
    ) -> None:
        super().__init__()
        self.img_instruct_attn = JointAttention(dim, heads, kv_heads)
        self.img_self_attn = Attention(
            query_dim=dim,
            cross_attention_dim=None,
            dim_head=dim // heads,
            qk_norm="rms_norm",
            heads=heads,
            kv_heads=kv_heads,
            eps=1e-5,
            bias=False,
            out_bias=False,
            processor=Lumina2AttnProcessor2_0(),  # type: ignore[arg-type]
        )

        def ffn() -> LuminaFeedForward:
            return LuminaFeedForward(dim, 4 * dim, multiple_of, ffn_dim_multiplier)

        def zero() -> LuminaRMSNormZero:
            return LuminaRMSNormZero(dim, norm_eps, True)

        def norm() -> RMSNorm:
            return RMSNorm(dim, eps=norm_eps)

        self.img_feed_forward, self.instruct_feed_forward = ffn(), ffn()
        self.img_norm1, self.img_norm2, self.img_norm3 = zero(), zero(), zero()
        self.instruct_norm1, self.instruct_norm2 = zero(), zero()
        self.img_attn_norm, self.img_self_attn_norm = norm(), norm()
        self.img_ffn_norm1, self.img_ffn_norm2 = norm(), norm()
        self.instruct_attn_norm = norm()
        self.instruct_ffn_norm1, self.instruct_ffn_norm2 = norm(), norm()

    def forward(
        self, image: Any, caption: Any, joint_freqs: Any, image_freqs: Any, temb: Any
    ) -> tuple[Any, Any]:
        caption_len = caption.shape[1]
        img1, img_gate_msa, img_scale_mlp, img_gate_mlp = self.img_norm1(image, temb)
        img2, img_shift_mlp, _, _ = self.img_norm2(image, temb)
        img3, img_gate_self, _, _ = self.img_norm3(image, temb)
        ins1, ins_gate_msa, ins_scale_mlp, ins_gate_mlp = self.instruct_norm1(caption, temb)
        ins2, ins_shift_mlp, _, _ = self.instruct_norm2(caption, temb)

        joint = self.img_instruct_attn(img1, ins1, joint_freqs)
        self_out = self.img_self_attn(
            hidden_states=img3,
            encoder_hidden_states=img3,
            attention_mask=None,
            image_rotary_emb=image_freqs,
        )

        def gate(value: Any) -> Any:
            return value.unsqueeze(1).tanh()

        image = image + gate(img_gate_msa) * self.img_attn_norm(joint[:, caption_len:])
        image = image + gate(img_gate_self) * self.img_self_attn_norm(self_out)
        mlp_in = (1 + img_scale_mlp.unsqueeze(1)) * img2 + img_shift_mlp.unsqueeze(1)
        mlp = self.img_feed_forward(self.img_ffn_norm1(mlp_in))
        image = image + gate(img_gate_mlp) * self.img_ffn_norm2(mlp)

        caption = caption + gate(ins_gate_msa) * self.instruct_attn_norm(joint[:, :caption_len])
        mlp_in = (1 + ins_scale_mlp.unsqueeze(1)) * ins2 + ins_shift_mlp.unsqueeze(1)
        mlp = self.instruct_feed_forward(self.instruct_ffn_norm1(mlp_in))
        caption = caption + gate(ins_gate_mlp) * self.instruct_ffn_norm2(mlp)
        return image, caption


class BooguTransformer(OmniGen2Stages, ModelMixin, ConfigMixin):  # type: ignore[misc]
    """BooguTransformer2DModel's computation and weight names (ComfyUI's file layout)."""

    @register_to_config
    def __init__(
        self,
        patch_size: int = 2,
        in_channels: int = 16,
        out_channels: int | None = None,
        hidden_size: int = 3360,
        num_layers: int = 32,
        num_double_stream_layers: int = 8,
        num_refiner_layers: int = 2,
        num_attention_heads: int = 28,
        num_kv_heads: int = 7,
        multiple_of: int = 256,
        ffn_dim_multiplier: float | None = None,
        norm_eps: float = 1e-5,
        axes_dim_rope: Sequence[int] = (40, 40, 40),
        text_feat_dim: int = 4096,
        timestep_scale: float = 1000.0,
        rope_theta: float = 10000,
        max_references: int = 5,
    ) -> None:
        super().__init__()
        blocks = self.build_stages()
        self.double_stream_layers = nn.ModuleList(
            DoubleStreamBlock(
                hidden_size,
                num_attention_heads,
                num_kv_heads,
                multiple_of,
                ffn_dim_multiplier,
                norm_eps,
            )
            for _ in range(num_double_stream_layers)
        )
        self.single_stream_layers = blocks(num_layers)

    def forward(
        self,
        hidden_states: Any,
        timestep: Any,
        encoder_hidden_states: Any,
        ref_latents: Sequence[Any] = (),
    ) -> Any:
        """The prediction [B, C, H, W], as OmniGen2Transformer.forward's."""
        prepared = self.prepare(hidden_states, timestep, encoder_hidden_states, ref_latents)
        caption, tokens = prepared.caption, prepared.tokens
        image_freqs = prepared.freqs[:, caption.shape[1] :]
        for block in self.double_stream_layers:
            tokens, caption = block(tokens, caption, prepared.freqs, image_freqs, prepared.temb)
        joint = torch.cat([caption, tokens], dim=1)
        for block in self.single_stream_layers:
            joint = block(joint, None, prepared.freqs, prepared.temb)
        return self.finish(joint, prepared)
