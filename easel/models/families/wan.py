"""The Wan 2.1 family (and ChronoEdit, a Wan 2.1 image-to-video model fine-tuned for editing):
a video diffusion transformer (diffusers' WanTransformer3DModel) on the Wan 2.1 VAE's 16-channel
latents [B, 16, frames, h, w] in 1x2x2 patches, conditioned on UMT5-XXL's hidden states and, for
the image-to-video models, on the start image (its latents and a mask concatenated to the input:
36 input channels) and its CLIP ViT-H penultimate hidden states. Flow matching.

As data: the latent format (the Wan 2.1 VAE's per-channel normalisation, done by
easel.models.qwen_vae: a scalar scaling of 1), model sampling ("flow", ComfyUI's Wan 2.1 shift
of 8), the text part, and how ComfyUI's diffusion-model file (the original Wan layout, with or
without `model.diffusion_model.`; diffusers' own keys load too) is recognised and sized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FlowFamily
from easel.models.families.qwen_image import QWEN_LATENT

SCHEDULER: Mapping[str, Any] = {  # ComfyUI's WAN21 sampling settings: shift 8
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 8.0,
    "use_dynamic_shifting": False,
}
UMT5_TEXT = TextPart("umt5xxl", pad_token="<pad>", hidden_act="gelu_new")
MAX_TOKENS = 512  # ComfyUI pads UMT5 prompts to 512 (min_length), as WanPipeline does
HEAD_DIM = 128  # every released Wan 2.1 / 2.2 transformer: heads of 128 channels
TEMPORAL_FACTOR = 4  # the Wan 2.1 VAE: 1 + 4k frames per 1 + k latent frames
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")
# (probe, layout): the original Wan keys (ComfyUI's files) and diffusers' own
PROBES = (
    (("blocks.0.self_attn.q.weight", "head.modulation", "patch_embedding.weight"), "wan"),
    (("blocks.0.attn1.to_q.weight", "scale_shift_table", "condition_embedder.time_proj.weight"),
     "diffusers"),
)


@dataclass(frozen=True)
class WanFamily(FlowFamily):
    """Wan 2.1: its own network adapter and text encoding."""

    network: str = "wan"
    text_encoding: str = "easel.models.wan_text"


WAN21 = WanFamily(
    "wan21",
    "Wan 2.1",
    QWEN_LATENT,
    "flow",
    (UMT5_TEXT,),
    pipeline_class="WanImageToVideoPipeline",
    scheduler_config=SCHEDULER,
)
FAMILIES = (WAN21,)


def layout_of(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """(prefix, "wan" or "diffusers") of a Wan transformer's keys in `state`, or None."""
    for prefix in PREFIXES:
        for probe, layout in PROBES:
            if all(prefix + key in state for key in probe):
                if layout == "diffusers" and prefix + "double_blocks.0.img_mod.modulate_table" in (
                    state
                ):
                    continue  # JoyImage: condition_embedder too, in double blocks
                return prefix, layout
    return None


def recognise(state: Mapping[str, Any]) -> tuple[WanFamily, tuple[str, ...]] | None:
    """(family, evidence) of a Wan 2.1 transformer, or None. Wan 2.2's 5B model (48-channel
    VAE latents) is told apart by its input width and refused by the loader."""
    found = layout_of(state)
    if found is None:
        return None
    return WAN21, (f"blocks with self_attn / cross_attn and a patch embedding ({found[1]} keys)",)


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def heads_of(dim: int) -> int:
    """Attention heads of a transformer `dim` wide (not in the shapes): heads of 128."""
    if dim % HEAD_DIM:
        raise ValueError(
            f"a width of {dim} does not split into Wan's heads of {HEAD_DIM} channels"
        )
    return dim // HEAD_DIM


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """WanTransformer3DModel's config read off the shapes of diffusers-layout keys (the
    original layout converted first: easel.models.wan_loading)."""

    def dims(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in state[key].shape)

    dim, in_channels, *patch = dims("patch_embedding.weight")
    patch_size = [int(n) for n in patch]
    config: dict[str, Any] = {
        "patch_size": patch_size,
        "num_attention_heads": heads_of(dim),
        "attention_head_dim": HEAD_DIM,
        "in_channels": in_channels,
        "out_channels": dims("proj_out.weight")[0] // (patch[0] * patch[1] * patch[2]),
        "text_dim": dims("condition_embedder.text_embedder.linear_1.weight")[1],
        "freq_dim": dims("condition_embedder.time_embedder.linear_1.weight")[1],
        "ffn_dim": dims("blocks.0.ffn.net.0.proj.weight")[0],
        "num_layers": _count(state, "blocks."),
        "cross_attn_norm": "blocks.0.norm2.weight" in state,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": 1024,
        "pos_embed_seq_len": None,
    }
    if "condition_embedder.image_embedder.norm1.weight" in state:  # image-to-video
        config["image_dim"] = dims("condition_embedder.image_embedder.norm1.weight")[0]
        config["added_kv_proj_dim"] = dims("blocks.0.attn2.add_k_proj.weight")[1]
        if "condition_embedder.image_embedder.pos_embed" in state:  # first-last-frame
            config["pos_embed_seq_len"] = dims("condition_embedder.image_embedder.pos_embed")[1]
    return config
