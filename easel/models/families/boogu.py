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
from easel.models.families.omnigen2 import MAX_REFERENCES, count, flow_scheduler, stages_config

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

SCHEDULER = flow_scheduler(SHIFT)


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


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """BooguTransformer's config read off the shapes, as OmniGen2's is
    (easel.models.families.omnigen2.stages_config, over the single-stream layers), plus the
    dual-stream depth."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Boogu transformer (double_stream_layers.N.img_instruct_attn)")
    config = stages_config(state, prefix, "single_stream_layers.", "Boogu", MAX_REFERENCES)
    config["num_double_stream_layers"] = count(state, prefix + "double_stream_layers.")
    return config
