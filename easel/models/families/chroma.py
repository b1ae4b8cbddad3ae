"""The Chroma family (Chroma1-HD and its kin): Flux.1 schnell's transformer pruned of its
per-block modulation, which a small MLP (the "distilled guidance layer", an approximator) makes
from the timestep alone; conditioned on T5-XXL embeddings only (no CLIP), with an attention mask
over the prompt's padding.

As data: latent format (the Flux VAE's), model sampling ("flow" with FLUX.1-dev's
resolution-dependent shift, as ChromaPipeline's scheduler config), the one text part, and how
ComfyUI's diffusion-model file (Black Forest Labs' keys plus `distilled_guidance_layer.*`, with or
without `model.diffusion_model.`) is recognised and sized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.flux import DEV_SCHEDULER, FLUX_LATENT, FLUX_T5, FlowFamily

HEAD_DIM = 128
ROPE_AXES = (16, 56, 56)
MARKER = "distilled_guidance_layer.in_proj.weight"  # what diffusers' and ComfyUI's detection use
PREFIXES = ("model.diffusion_model.", "")


@dataclass(frozen=True)
class ChromaFamily(FlowFamily):
    """Chroma: its own network adapter and text encoding (masked T5)."""

    network: str = "chroma"
    text_encoding: str = "easel.models.chroma_text"


CHROMA = ChromaFamily(
    "chroma",
    "Chroma",
    FLUX_LATENT,
    "flow",
    (FLUX_T5,),
    pipeline_class="ChromaPipeline",
    scheduler_config=DEV_SCHEDULER,
)
FAMILIES = (CHROMA,)


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Chroma transformer's keys start in `state`, or None when there is none."""
    for prefix in PREFIXES:
        if prefix + MARKER in state and prefix + "double_blocks.0.img_attn.qkv.weight" in state:
            return prefix
    return None


def is_chroma(state: Mapping[str, Any]) -> bool:
    return prefix_of(state) is not None


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """ChromaTransformer2DModel's config read off the shapes: width from img_in, depths from
    the block indices, heads of 128, the approximator's width and depth from its layers."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Chroma transformer (distilled_guidance_layer) in the file")
    img_in = tuple(state[prefix + "img_in.weight"].shape)
    hidden = int(img_in[0])
    if hidden % HEAD_DIM:
        raise ValueError(f"width {hidden} is not a multiple of Chroma's heads of {HEAD_DIM}")
    approximator = tuple(state[prefix + MARKER].shape)
    return {
        "patch_size": 1,
        "in_channels": int(img_in[1]),
        "out_channels": int(state[prefix + "final_layer.linear.weight"].shape[0]),
        "num_layers": _count(state, prefix + "double_blocks."),
        "num_single_layers": _count(state, prefix + "single_blocks."),
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": int(state[prefix + "txt_in.weight"].shape[1]),
        "axes_dims_rope": list(ROPE_AXES),
        "approximator_num_channels": int(approximator[1]),
        "approximator_hidden_dim": int(approximator[0]),
        "approximator_layers": _count(state, prefix + "distilled_guidance_layer.layers."),
    }
