"""The LongCat-Image family (meituan-longcat/LongCat-Image, -Dev and -Edit): Flux.1's
double/single-stream transformer without the pooled-text and guidance embeddings, conditioned
on the last hidden states of Qwen2.5-VL-7B (prompt padded to 512 tokens, the chat template's
prefix and suffix dropped), decoded by the Flux VAE (ComfyUI's `ae.safetensors`).

As data: the latent format (the Flux VAE's), model sampling ("flow" with the resolution-dependent
shift of LongCat-Image's diffusers scheduler config, FLUX.1-dev's numbers), the one text part
(Qwen2.5-VL), and how ComfyUI's diffusion-model file is recognised and sized: Black Forest
Labs' keys (`double_blocks` / `single_blocks`, with or without `model.diffusion_model.`) with a
text input of Qwen2.5-VL's width and no `vector_in` (Flux.1 has CLIP-L's pooled input there),
or diffusers' own keys (`time_embed.timestep_embedder`, which Flux.1's diffusers transformer
calls `time_text_embed`).

Position ids as LongCatImagePipeline makes them: text tokens (0, i, i), image tokens
(1, T + row, T + column) with T the text length (512 after the pipeline's padding).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.flux import DEV_SCHEDULER, FLUX_LATENT, FlowFamily
from easel.models.families.qwen_image import QWEN_TEXT

HEAD_DIM = 128  # LongCat-Image: heads of 128 channels, rope axes (16, 56, 56) as Flux.1
ROPE_AXES = (16, 56, 56)
MAX_TOKENS = 512  # LongCatImagePipeline's tokenizer_max_length: prompts padded to it
# LongCatImagePipeline's chat template around the prompt tokens (both ends dropped from the
# hidden states)
PROMPT_PREFIX = (
    "<|im_start|>system\nAs an image captioning expert, generate a descriptive text prompt "
    "based on an image content, suitable for input to a text-to-image model.<|im_end|>\n"
    "<|im_start|>user\n"
)
PROMPT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"
# LongCatImageEditPipeline's: its system prompt, then the image's tokens (from
# "<|vision_start|>" on, the hidden states are kept: the image's, then the prompt's)
EDIT_PREFIX = (
    "<|im_start|>system\nAs an image editing expert, first analyze the content and attributes "
    "of the input image(s). Then, based on the user's editing instructions, clearly and "
    "precisely determine how to modify the given image(s), ensuring that only the specified "
    "parts are altered and all other aspects remain consistent with the original(s)."
    "<|im_end|>\n<|im_start|>user\n<|vision_start|>{}<|vision_end|>"
)
IMAGE_PAD = "<|image_pad|>"

# the diffusers keys of LongCat-Image's transformer (diffusers' single-file layout)
DIFFUSERS_PROBE = "time_embed.timestep_embedder.linear_1.weight"
PREFIXES = ("model.diffusion_model.", "transformer.", "")


@dataclass(frozen=True)
class LongCatFamily(FlowFamily):
    """LongCat-Image: its own network adapter and text encoding (Qwen2.5-VL, padded)."""

    network: str = "longcat"
    text_encoding: str = "easel.models.longcat_text"


LONGCAT = LongCatFamily(
    "longcat-image",
    "LongCat-Image",
    FLUX_LATENT,
    "flow",
    (QWEN_TEXT,),
    pipeline_class="LongCatImagePipeline",
    scheduler_config=DEV_SCHEDULER,
)
FAMILIES = (LONGCAT,)


def layout_of(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """("bfl" or "diffusers", prefix) of a LongCat-Image transformer in `state`, or None.

    Black Forest Labs' layout: double blocks, a text input and no `vector_in` nor Chroma's
    approximator nor Flux.2's shared modulation nor Ovis-Image's text norm. Flux.1's own files
    always have `vector_in` (CLIP-L's pooled embedding), so the two cannot be mistaken."""
    for prefix in PREFIXES:
        if prefix + DIFFUSERS_PROBE in state and prefix + "x_embedder.weight" in state:
            return "diffusers", prefix
        if (
            prefix + "double_blocks.0.img_attn.qkv.weight" in state
            and prefix + "txt_in.weight" in state
            and prefix + "time_in.in_layer.weight" in state
            and prefix + "vector_in.in_layer.weight" not in state
            and prefix + "distilled_guidance_layer.in_proj.weight" not in state
            and prefix + "double_stream_modulation_img.lin.weight" not in state
            and prefix + "txt_norm.scale" not in state  # Ovis-Image (easel...families.ovis)
        ):
            return "bfl", prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[LongCatFamily, tuple[str, ...]] | None:
    """(family, evidence) of a LongCat-Image transformer, or None."""
    found = layout_of(state)
    if found is None:
        return None
    if found[0] == "diffusers":
        return LONGCAT, ("time_embed / x_embedder / transformer_blocks (LongCat-Image)",)
    return LONGCAT, (
        "double_blocks / single_blocks without vector_in or guidance_in (LongCat-Image)",
    )


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """LongCatImageTransformer2DModel's config read off the shapes (either layout): width and
    input channels from the image input, text width from the text input, depths from the block
    indices, heads of 128."""
    found = layout_of(state)
    if found is None:
        raise ValueError("no LongCat-Image transformer (double_blocks without vector_in)")
    layout, prefix = found
    if layout == "bfl":
        img_in = tuple(state[prefix + "img_in.weight"].shape)
        text = int(state[prefix + "txt_in.weight"].shape[1])
        double = _count(state, prefix + "double_blocks.")
        single = _count(state, prefix + "single_blocks.")
    else:
        img_in = tuple(state[prefix + "x_embedder.weight"].shape)
        text = int(state[prefix + "context_embedder.weight"].shape[1])
        double = _count(state, prefix + "transformer_blocks.")
        single = _count(state, prefix + "single_transformer_blocks.")
    hidden = int(img_in[0])
    if hidden % HEAD_DIM:
        raise ValueError(f"width {hidden} is not a multiple of LongCat's heads of {HEAD_DIM}")
    return {
        "patch_size": 1,
        "in_channels": int(img_in[1]),
        "num_layers": double,
        "num_single_layers": single,
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": text,
        "pooled_projection_dim": text,
        "axes_dims_rope": list(ROPE_AXES),
    }
