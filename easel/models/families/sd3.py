"""The Stable Diffusion 3 / 3.5 families (SD3 Medium, SD3.5 Medium, Large and Large Turbo): an
MMDiT (diffusers' SD3Transformer2DModel) on 16-channel latents, patch-embedded inside the model,
conditioned on CLIP-L and CLIP-G's penultimate hidden states (side by side, padded to T5's
width) followed by T5-XXL's, and on both CLIPs' pooled embeddings.

As data: latent format (SD3's VAE config: scaling 1.5305, shift 0.0609), model sampling ("flow"
with the fixed shift 3.0 of every SD3 scheduler config, which ModelSamplingSD3 changes), text
parts, and how a file in Stability's original key layout (`joint_blocks.N`, with or without
`model.diffusion_model.`) is recognised and sized, as diffusers'
`convert_sd3_transformer_checkpoint_to_diffusers` reads it: depth from the joint blocks, the
position-embedding grid, 3.5 Medium's second attention (`x_block.attn2`) and 3.5's qk norm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import LatentFormat, TextPart
from easel.models.families.flux import FlowFamily

SD3_LATENT = LatentFormat(channels=16, scaling_factor=1.5305, shift_factor=0.0609, factor=8)
# StableDiffusion3Pipeline / ComfyUI: both CLIPs' penultimate layer without the final norm.
# CLIP-L's pooled output is unprojected in ComfyUI (SD3's CLIP-L projection is the identity);
# CLIP-G's is projected.
SD3_CLIP_L = TextPart("l", layer=-2, layer_norm=False, pooled=True, hidden_act="quick_gelu")
SD3_CLIP_G = TextPart(
    "g", layer=-2, layer_norm=False, pooled=True, hidden_act="gelu", pad_token="!"
)
SD3_T5 = TextPart("t5", pad_token="<pad>", hidden_act="gelu_new")
HEAD_DIM = 64  # every SD3 transformer: heads of 64 channels
T5_MIN_TOKENS = 77  # ComfyUI pads SD3's T5 prompt to at least 77 tokens (no attention mask)
T5_MAX_TOKENS = 512  # the most StableDiffusion3Pipeline takes (max_sequence_length)

# The diffusers scheduler config of every SD3 / 3.5 repository (scheduler/scheduler_config.json)
SD3_SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": False,
}


@dataclass(frozen=True)
class SD3Family(FlowFamily):
    """An SD3 family: the `sd3` network adapter (easel.models.sd3_denoiser) and text module
    (easel.models.sd3_text); the transformer patch-embeds the latent itself."""

    network: str = "sd3"
    text_encoding: str = "easel.models.sd3_text"


def _family(name: str, label: str) -> SD3Family:
    return SD3Family(
        name,
        label,
        SD3_LATENT,
        "flow",
        (SD3_CLIP_L, SD3_CLIP_G, SD3_T5),
        pipeline_class="StableDiffusion3Pipeline",
        scheduler_config=SD3_SCHEDULER,
    )


SD3_MEDIUM = _family("sd3", "Stable Diffusion 3 Medium")
SD35_MEDIUM = _family("sd3.5-medium", "Stable Diffusion 3.5 Medium")
# Large and Large Turbo share one architecture (Turbo is distilled: 4 steps at cfg 1).
SD35_LARGE = _family("sd3.5-large", "Stable Diffusion 3.5 Large (or Large Turbo)")

FAMILIES = (SD3_MEDIUM, SD35_MEDIUM, SD35_LARGE)

PREFIXES = ("model.diffusion_model.", "")


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where an SD3 transformer's keys start in `state`, or None when there is none."""
    for prefix in PREFIXES:
        if prefix + "joint_blocks.0.x_block.attn.qkv.weight" in state:
            return prefix
    return None


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def dual_attention_layers(state: Mapping[str, Any], prefix: str) -> tuple[int, ...]:
    """The joint blocks with a second image attention (`x_block.attn2`: SD3.5 Medium)."""
    head = prefix + "joint_blocks."
    found = {
        int(k[len(head) :].split(".", 1)[0])
        for k in state
        if k.startswith(head) and ".x_block.attn2." in k
    }
    return tuple(sorted(found))


def recognise(state: Mapping[str, Any]) -> tuple[SD3Family, tuple[str, ...]] | None:
    """(family, evidence) of an SD3 transformer in the original key layout, or None."""
    prefix = prefix_of(state)
    if prefix is None:
        return None
    evidence = ["joint_blocks (SD3 MMDiT)"]
    if dual_attention_layers(state, prefix):
        return SD35_MEDIUM, (*evidence, "second image attention (x_block.attn2): 3.5 Medium")
    if prefix + "joint_blocks.0.x_block.attn.ln_q.weight" in state:
        return SD35_LARGE, (*evidence, "qk norm without a second attention: 3.5 Large")
    return SD3_MEDIUM, (*evidence, "no qk norm: SD3 Medium")


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """SD3Transformer2DModel's config read off the shapes (as ComfyUI's model detection and
    diffusers' converter read them): width and patch from the patch embedding, depth from the
    joint blocks, the position grid from pos_embed, heads of 64 (or the qk norm's width)."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no SD3 transformer (joint_blocks) in the file")
    proj = tuple(state[prefix + "x_embedder.proj.weight"].shape)  # [hidden, in, p, p]
    hidden, in_channels, patch = int(proj[0]), int(proj[1]), int(proj[2])
    ln_q = state.get(prefix + "joint_blocks.0.x_block.attn.ln_q.weight")
    head_dim = int(ln_q.shape[0]) if ln_q is not None else HEAD_DIM
    if hidden % head_dim:
        raise ValueError(f"width {hidden} is not a multiple of SD3's heads of {head_dim}")
    positions = int(state[prefix + "pos_embed"].shape[1])
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise ValueError(f"pos_embed holds {positions} positions, not a square grid")
    final = int(state[prefix + "final_layer.linear.weight"].shape[0])
    context = tuple(state[prefix + "context_embedder.weight"].shape)  # [caption dim, joint dim]
    return {
        "sample_size": 128,  # SD3's 1024-pixel default; the position grid is pos_embed's
        "patch_size": patch,
        "in_channels": in_channels,
        "out_channels": final // (patch * patch),
        "num_layers": _count(state, prefix + "joint_blocks."),
        "attention_head_dim": head_dim,
        "num_attention_heads": hidden // head_dim,
        "joint_attention_dim": int(context[1]),
        "caption_projection_dim": int(context[0]),
        "pooled_projection_dim": int(state[prefix + "y_embedder.mlp.0.weight"].shape[1]),
        "pos_embed_max_size": grid,
        "dual_attention_layers": dual_attention_layers(state, prefix),
        "qk_norm": "rms_norm" if ln_q is not None else None,
    }


def folder_family(config: Any) -> SD3Family:
    """The family of a diffusers SD3 transformer (its config)."""

    def get(key: str) -> Any:
        return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)

    if get("dual_attention_layers"):
        return SD35_MEDIUM
    if get("qk_norm"):
        return SD35_LARGE
    return SD3_MEDIUM
