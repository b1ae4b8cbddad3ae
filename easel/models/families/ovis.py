"""The Ovis-Image family (AIDC-AI/Ovis-Image-7B): a Flux.1-style double/single-stream
transformer with SwiGLU feed-forwards and an RMS norm on the text input, no pooled-text or
guidance embedding, conditioned on the last hidden states of Ovis 2.5's language model (a
Qwen3, 2048 wide) and decoded by the Flux VAE (ComfyUI's `ae.safetensors`).

As data: the latent format (the Flux VAE's), model sampling ("flow" with a fixed shift of 3,
what ComfyUI's Ovis template sets with ModelSamplingAuraFlow), the one text part, and how
ComfyUI's diffusion-model file is recognised and sized: Black Forest Labs' keys with
`double_blocks.N.img_mlp.gate_proj` (ComfyUI's "yak" MLP) and `txt_norm.scale`, with or
without `model.diffusion_model.`; or diffusers' own keys (`context_embedder_norm`).

Position ids as OvisImagePipeline makes them: text tokens (0, i, i), image tokens
(0, row, column).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FLUX_LATENT, FlowFamily

HEAD_DIM = 128
ROPE_AXES = (16, 56, 56)
MAX_TOKENS = 256  # OvisImagePipeline's max_sequence_length (its ceiling too)
# Qwen3's chat template around OvisImagePipeline's system prompt and the prompt (one user turn,
# the generation prompt with thinking off), as the pipeline's tokenizer renders it and as
# ComfyUI's Ovis tokenizer writes it.
SYSTEM_PROMPT = (
    "Describe the image by detailing the color, quantity, text, shape, size, texture, spatial "
    "relationships of the objects and background: "
)
TEMPLATE = (
    "<|im_start|>user\n" + SYSTEM_PROMPT + "{}<|im_end|>\n<|im_start|>assistant\n"
    "<think>\n\n</think>\n\n"
)
# The tokens dropped from the hidden states: those of the template up to "background" (the ":"
# and the prompt are kept), ComfyUI's rule; OvisImagePipeline hard-codes their count for Qwen's
# tokenizer (`user_prompt_begin_id`, 28).
DROPPED_TEXT = "<|im_start|>user\n" + SYSTEM_PROMPT.rstrip().removesuffix(":")
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": False,
}

OVIS_TEXT = TextPart("qwen3", pad_token="<|endoftext|>", hidden_act="silu")
PREFIXES = ("model.diffusion_model.", "transformer.", "")
YAK_PROBE = "double_blocks.0.img_mlp.gate_proj.weight"
TXT_NORM = "txt_norm.scale"
DIFFUSERS_PROBE = "context_embedder_norm.weight"


@dataclass(frozen=True)
class OvisFamily(FlowFamily):
    """Ovis-Image: its own network adapter and text encoding (Qwen3, padded, masked)."""

    network: str = "ovis"
    text_encoding: str = "easel.models.ovis_text"


OVIS = OvisFamily(
    "ovis-image",
    "Ovis-Image",
    FLUX_LATENT,
    "flow",
    (OVIS_TEXT,),
    pipeline_class="OvisImagePipeline",
    scheduler_config=SCHEDULER,
)
FAMILIES = (OVIS,)


def layout_of(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """("bfl" or "diffusers", prefix) of an Ovis-Image transformer in `state`, or None."""
    for prefix in PREFIXES:
        if prefix + YAK_PROBE in state and prefix + TXT_NORM in state:
            return "bfl", prefix
        if (
            prefix + DIFFUSERS_PROBE in state
            and prefix + "timestep_embedder.linear_1.weight" in state
            and prefix + "single_transformer_blocks.0.proj_mlp.weight" in state
        ):
            return "diffusers", prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[OvisFamily, tuple[str, ...]] | None:
    """(family, evidence) of an Ovis-Image transformer, or None."""
    found = layout_of(state)
    if found is None:
        return None
    if found[0] == "diffusers":
        return OVIS, ("context_embedder_norm / single_transformer_blocks (Ovis-Image)",)
    return OVIS, ("double_blocks with img_mlp.gate_proj and txt_norm (Ovis-Image)",)


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """OvisImageTransformer2DModel's config read off the shapes (either layout)."""
    found = layout_of(state)
    if found is None:
        raise ValueError("no Ovis-Image transformer (double_blocks with gate_proj, txt_norm)")
    layout, prefix = found
    if layout == "bfl":
        img_in = tuple(state[prefix + "img_in.weight"].shape)
        text = int(state[prefix + "txt_in.weight"].shape[1])
        out = int(state[prefix + "final_layer.linear.weight"].shape[0])
        double = _count(state, prefix + "double_blocks.")
        single = _count(state, prefix + "single_blocks.")
    else:
        img_in = tuple(state[prefix + "x_embedder.weight"].shape)
        text = int(state[prefix + "context_embedder.weight"].shape[1])
        out = int(state[prefix + "proj_out.weight"].shape[0])
        double = _count(state, prefix + "transformer_blocks.")
        single = _count(state, prefix + "single_transformer_blocks.")
    hidden = int(img_in[0])
    if hidden % HEAD_DIM:
        raise ValueError(f"width {hidden} is not a multiple of Ovis-Image's heads of {HEAD_DIM}")
    return {
        "patch_size": 1,
        "in_channels": int(img_in[1]),
        "out_channels": out,
        "num_layers": double,
        "num_single_layers": single,
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": text,
        "axes_dims_rope": list(ROPE_AXES),
    }
