"""The Boogu-Image family (Boogu-Image 0.1: text-to-image, Turbo and Edit), an OmniGen2
derivative: OmniGen2's embedders, refiners and RoPE (easel.models.families.omnigen2), a
dual-stream stage (`double_stream_layers`: caption and image tokens with their own
projections, modulation and feed-forwards, attending jointly, the image also attending to
itself) before the single-stream layers, conditioned on Qwen3-VL-8B's last hidden state (final
norm applied) over the prompt in Boogu's chat template; the Edit model also sees the images to
edit through Qwen3-VL's vision tower and as reference latents.

As data: the latent format (the Flux VAE), model sampling ("flow", the constant shift 3.16 of
ComfyUI's model config and ModelSamplingAuraFlow in its templates), the text part and chat
templates, and how a diffusion-model file in ComfyUI's layout is recognised and sized.

There is no reference pipeline: no library (diffusers 0.42, transformers) has Boogu. The
transformer is built from diffusers' Lumina 2 pieces (easel.models.boogu_transformer); the rest
follows ComfyUI's `comfy/ldm/boogu/model.py`, `comfy/text_encoders/boogu.py` and
`comfy_extras/nodes_boogu.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FLUX_LATENT, FlowFamily
from easel.models.families.omnigen2 import (
    MAX_REFERENCES,
    ROPE_THETA,
    TIMESTEP_SCALE,
    count,
)

SHIFT = 3.16  # ComfyUI's Boogu sampling settings, and ModelSamplingAuraFlow in its templates

# Boogu's system prompts (its pipeline's; ComfyUI's BooguTokenizer): text-to-image prompts get
# the first; prompts with images, and the empty prompt of the guidance's negative, the second.
T2I_SYSTEM = (
    "You are a helpful assistant that generates high-quality images based on user "
    "instructions. The instructions are as follows."
)
DROP_SYSTEM = (
    "Describe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the "
    "image. Generate a new image that meets the user's requirements while maintaining "
    "consistency with the original input where appropriate."
)
TEMPLATE = "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
VISION_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"
VL_PIXELS = 384 * 384  # the images Qwen3-VL sees are scaled to this area (Boogu's pipeline)
REFERENCE_PIXELS = 1024 * 1024  # reference latents: the image scaled to this area, 16-aligned

QWEN3VL_8B = TextPart(
    "qwen3vl", layer=-1, layer_norm=True, pad_token="<|endoftext|>", hidden_act="silu"
)

SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": SHIFT,
    "use_dynamic_shifting": False,
}


@dataclass(frozen=True)
class BooguFamily(FlowFamily):
    """Boogu: prompts are encoded by `text_encoding` (easel.models.boogu_text)."""

    text_encoding: str = "easel.models.boogu_text"


BOOGU = BooguFamily(
    "boogu",
    "Boogu-Image",
    FLUX_LATENT,
    "flow",
    (QWEN3VL_8B,),
    pipeline_class="",  # no library pipeline exists
    scheduler_config=SCHEDULER,
    network="boogu",
)

FAMILIES = (BOOGU,)

PREFIXES = ("model.diffusion_model.", "")
MARKER = "double_stream_layers.0.img_instruct_attn.processor.img_to_q.weight"  # ComfyUI's


def prompt_text(text: str, images: int = 0) -> str:
    """`text` in Boogu's chat template (ComfyUI's BooguTokenizer): with images the describe
    ("drop") system turn and one vision block per image before the text; an empty prompt
    without images the drop system turn too; else the text-to-image system turn."""
    if images:
        return TEMPLATE.format(DROP_SYSTEM, VISION_BLOCK * images + text)
    if not text.strip():
        return TEMPLATE.format(DROP_SYSTEM, text)
    return TEMPLATE.format(T2I_SYSTEM, text)


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Boogu transformer's keys start in `state`, or None."""
    for prefix in PREFIXES:
        if prefix + MARKER in state and prefix + "x_embedder.weight" in state:
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[BooguFamily, tuple[str, ...]] | None:
    """(family, evidence) of a Boogu transformer in ComfyUI's layout."""
    if prefix_of(state) is None:
        return None
    return BOOGU, ("double_stream_layers.N.img_instruct_attn (Boogu-Image)",)


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in state[key].shape)


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """BooguTransformer's config read off the shapes, as OmniGen2's is
    (easel.models.families.omnigen2.transformer_config), plus the dual-stream depth."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Boogu transformer (double_stream_layers.N.img_instruct_attn)")
    dim, patch_in = _shape(state, prefix + "x_embedder.weight")
    head_dim = _shape(state, prefix + "single_stream_layers.0.attn.norm_q.weight")[0]
    kv_rows = _shape(state, prefix + "single_stream_layers.0.attn.to_k.weight")[0]
    if dim % head_dim or kv_rows % head_dim:
        raise ValueError(f"width {dim} and kv width {kv_rows} are not heads of {head_dim}")
    if head_dim % 6:
        raise ValueError(
            f"heads of {head_dim} channels do not split into three even RoPE axes "
            "(Boogu's: 120 = 40 + 40 + 40)"
        )
    inner = _shape(state, prefix + "single_stream_layers.0.feed_forward.linear_1.weight")[0]
    multiple_of, multiplier = 256, None
    if 256 * -(-4 * dim // 256) != inner:
        multiple_of, multiplier = 1, (inner + 0.5) / (4 * dim)
    out = _shape(state, prefix + "norm_out.linear_2.weight")[0]
    index_rows = prefix + "image_index_embedding"
    return {
        "patch_size": 2,
        "in_channels": patch_in // 4,
        "out_channels": out // 4,
        "hidden_size": dim,
        "num_layers": count(state, prefix + "single_stream_layers."),
        "num_double_stream_layers": count(state, prefix + "double_stream_layers."),
        "num_refiner_layers": count(state, prefix + "noise_refiner."),
        "num_attention_heads": dim // head_dim,
        "num_kv_heads": kv_rows // head_dim,
        "multiple_of": multiple_of,
        "ffn_dim_multiplier": multiplier,
        "norm_eps": 1e-5,
        "axes_dim_rope": [head_dim // 3] * 3,
        "text_feat_dim": _shape(state, prefix + "time_caption_embed.caption_embedder.1.weight")[1],
        "timestep_scale": TIMESTEP_SCALE,
        "rope_theta": ROPE_THETA,
        "max_references": _shape(state, index_rows)[0] if index_rows in state else MAX_REFERENCES,
    }
