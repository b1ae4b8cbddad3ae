"""The OmniGen2 family (VectorSpaceLab, Apache-2.0): a Lumina-Image-2.0-style flow transformer
on the Flux VAE's 16-channel latents in 2x2 patches, conditioned on Qwen2.5-VL-3B's last hidden
state (final norm applied) over the prompt in OmniGen2's chat template, and on up to five
reference images (VAE latents of the images to edit, ComfyUI's ReferenceLatent) that have an
embedder and refiner blocks of their own and their own frames on the RoPE's first axis.

As data: the latent format (the Flux VAE), model sampling ("flow", the constant shift 2.6 of
ComfyUI's model config, timesteps as sigmas), the text part and chat template, and how a
diffusion-model file in the original layout (`time_caption_embed`, `noise_refiner`,
`ref_image_refiner`, `context_refiner`, `layers.N.attn.to_q`, with or without
`model.diffusion_model.`) is recognised and sized.

There is no reference pipeline: no library (diffusers 0.42 has OmniGen v1 only, transformers)
has OmniGen2. The transformer is built from diffusers' Lumina 2 blocks
(easel.models.omnigen2_transformer); the rest follows ComfyUI's `comfy/ldm/omnigen/omnigen2.py`
and model detection (heads of 120 channels in RoPE axes of 40: read here as a third of the
head on each axis, so that smaller test models size themselves the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FLUX_LATENT, FlowFamily

SHIFT = 2.6  # ComfyUI's OmniGen2 sampling settings (multiplier 1: timesteps are sigmas)
TIMESTEP_SCALE = 1000.0
ROPE_THETA = 10000
MAX_REFERENCES = 5  # rows of the transformer's image_index_embedding

# OmniGen2's chat template (its pipeline's apply_chat_template of a system and a user turn,
# no generation prompt; ComfyUI's Omnigen2Tokenizer): every token is the conditioning.
SYSTEM_PROMPT = (
    "You are a helpful assistant that generates high-quality images based on user instructions."
)
TEMPLATE = "<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"

QWEN25_3B = TextPart(
    "qwen25_3b", layer=-1, layer_norm=True, pad_token="<|endoftext|>", hidden_act="silu"
)



def flow_scheduler(shift: float) -> Mapping[str, Any]:
    """The scheduler config of OmniGen2 and its derivatives (Boogu): flow matching at the
    constant `shift`."""
    return {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "num_train_timesteps": 1000,
        "shift": shift,
        "use_dynamic_shifting": False,
    }


SCHEDULER = flow_scheduler(SHIFT)


@dataclass(frozen=True)
class OmniGen2Family(FlowFamily):
    """OmniGen2: prompts are encoded by `text_encoding` (easel.models.omnigen2_text)."""

    text_encoding: str = "easel.models.omnigen2_text"


OMNIGEN2 = OmniGen2Family(
    "omnigen2",
    "OmniGen2",
    FLUX_LATENT,
    "flow",
    (QWEN25_3B,),
    pipeline_class="",  # no library pipeline exists
    scheduler_config=SCHEDULER,
    network="omnigen2",
)

FAMILIES = (OMNIGEN2,)

PREFIXES = ("model.diffusion_model.", "")
MARKER = "time_caption_embed.timestep_embedder.linear_1.bias"  # ComfyUI's detection key


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where an OmniGen2 transformer's keys start in `state`, or None. Boogu (an OmniGen2
    derivative with double-stream layers) has the same embedders and is not OmniGen2."""
    for prefix in PREFIXES:
        if (
            prefix + MARKER in state
            and prefix + "ref_image_patch_embedder.weight" in state
            and prefix + "layers.0.attn.to_q.weight" in state
            and not any(k.startswith(prefix + "double_stream_layers.") for k in state)
        ):
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[OmniGen2Family, tuple[str, ...]] | None:
    """(family, evidence) of an OmniGen2 transformer in the original layout."""
    if prefix_of(state) is None:
        return None
    evidence = "time_caption_embed / ref_image_patch_embedder / layers.N.attn (OmniGen2)"
    return OMNIGEN2, (evidence,)


def count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in state[key].shape)


def stages_config(
    state: Mapping[str, Any],
    prefix: str,
    blocks: str,
    name: str,
    max_references: int | None = None,
) -> dict[str, Any]:
    """The config of OmniGen2's stages and Lumina 2 blocks read off the shapes (OmniGen2's and
    its derivative Boogu's): width from x_embedder, heads from the per-head q norm of the main
    blocks (`blocks`, their key head: "layers." in OmniGen2), kv heads from their to_k, caption
    width from the caption embedder, depths from the block indices, the references from
    image_index_embedding (`max_references` where the file has none; required where None).
    The feed-forward width is diffusers' `multiple_of * ceil(multiplier * 4 * width /
    multiple_of)`: OmniGen2's (256, None) when that gives the file's, else a multiplier giving
    it exactly. `name` is the family's, for the refusal of heads RoPE cannot split."""
    dim, patch_in = shape(state, prefix + "x_embedder.weight")
    head_dim = shape(state, prefix + blocks + "0.attn.norm_q.weight")[0]
    kv_rows = shape(state, prefix + blocks + "0.attn.to_k.weight")[0]
    if dim % head_dim or kv_rows % head_dim:
        raise ValueError(f"width {dim} and kv width {kv_rows} are not heads of {head_dim}")
    if head_dim % 6:
        raise ValueError(
            f"heads of {head_dim} channels do not split into three even RoPE axes "
            f"({name}'s: 120 = 40 + 40 + 40)"
        )
    inner = shape(state, prefix + blocks + "0.feed_forward.linear_1.weight")[0]
    multiple_of, multiplier = 256, None
    if 256 * -(-4 * dim // 256) != inner:
        multiple_of, multiplier = 1, (inner + 0.5) / (4 * dim)
    out = shape(state, prefix + "norm_out.linear_2.weight")[0]
    index_rows = prefix + "image_index_embedding"
    if max_references is None or index_rows in state:
        max_references = shape(state, index_rows)[0]
    return {
        "patch_size": 2,
        "in_channels": patch_in // 4,
        "out_channels": out // 4,
        "hidden_size": dim,
        "num_layers": count(state, prefix + blocks),
        "num_refiner_layers": count(state, prefix + "noise_refiner."),
        "num_attention_heads": dim // head_dim,
        "num_kv_heads": kv_rows // head_dim,
        "multiple_of": multiple_of,
        "ffn_dim_multiplier": multiplier,
        "norm_eps": 1e-5,
        "axes_dim_rope": [head_dim // 3] * 3,
        "text_feat_dim": shape(state, prefix + "time_caption_embed.caption_embedder.1.weight")[1],
        "timestep_scale": TIMESTEP_SCALE,
        "rope_theta": ROPE_THETA,
        "max_references": max_references,
    }


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """OmniGen2Transformer's config read off the shapes (`stages_config`)."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no OmniGen2 transformer (time_caption_embed, layers.N.attn) in the file")
    return stages_config(state, prefix, "layers.", "OmniGen2")
