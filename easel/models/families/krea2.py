"""The Krea 2 family (Krea 2 Raw and its few-step distilled Turbo): a single-stream flow-matching
transformer on the Qwen-Image VAE's 16-channel latents in 2x2 patches, conditioned on a stack of
hidden states tapped from 12 layers of Qwen3-VL-4B (`hidden_states[2, 5, ..., 35]`), which a
small text-fusion transformer inside the model collapses into one sequence.

As data: the latent format (the Qwen VAE's, latents kept normalised per channel as for
Qwen-Image), model sampling ("flow" with ComfyUI's fixed mu 1.15, the exponential time shift
Krea2Pipeline uses for the distilled model), the text part, and how a diffusion-model file in
the original key layout (ComfyUI's `diffusion_models/` files: `first`, `tmlp`, `tproj`,
`txtmlp`, `txtfusion`, `blocks.N`, `last`; with or without `model.diffusion_model.`) is
recognised and sized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FlowFamily
from easel.models.families.qwen_image import QWEN_LATENT

# Krea2Pipeline's prompt template: Qwen-Image's system prompt, whose tokens up to and with
# "<|im_start|>user\n" are dropped from the hidden states (ComfyUI's Krea 2 encoder drops the
# same); Qwen3's "thinking" convention: no empty <think> block.
PROMPT_PREFIX = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n"
)
PROMPT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"
MAX_TOKENS = 512  # Krea2Pipeline's max_sequence_length (the prompt and the suffix)
# indices into the encoder's hidden_states (0: the embeddings), as Krea2Pipeline and ComfyUI
TAP_LAYERS = (2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35)

QWEN3VL = TextPart(
    "qwen3vl", layer=-1, layer_norm=False, pad_token="<|endoftext|>", hidden_act="silu"
)

# ComfyUI's Krea 2 model sampling: Flux's exponential shift at a fixed mu 1.15 (whatever the
# size), which is Krea2Pipeline's schedule for the distilled model (`is_distilled`).
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 6400,
    "mu": 1.15,
}


@dataclass(frozen=True)
class Krea2Family(FlowFamily):
    """Krea 2: prompts are encoded by `text_encoding` (easel.models.krea2_text)."""

    text_encoding: str = "easel.models.krea2_text"


KREA2 = Krea2Family(
    "krea2",
    "Krea 2",
    QWEN_LATENT,
    "flow",
    (QWEN3VL,),
    pipeline_class="Krea2Pipeline",
    scheduler_config=SCHEDULER,
    network="krea2",
)

FAMILIES = (KREA2,)

PREFIXES = ("model.diffusion_model.", "")
ROPE_AXES = (32, 48, 48)  # heads of 128 over (t, h, w), Krea2Transformer2DModel's default
SIGNATURE = "txtfusion.projector.weight"


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Krea 2 transformer's keys start in `state`, or None."""
    for prefix in PREFIXES:
        if prefix + SIGNATURE in state and prefix + "blocks.0.attn.wq.weight" in state:
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[Krea2Family, tuple[str, ...]] | None:
    """(family, evidence) of a Krea 2 transformer in the original layout."""
    if prefix_of(state) is None:
        return None
    return KREA2, ("txtfusion (text fusion over tapped encoder layers) / blocks: Krea 2",)


def count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in state[key].shape)


def _heads(state: Mapping[str, Any], block: str) -> tuple[int, int, int]:
    """(head_dim, heads, kv heads) of one attention block, from its q norm and projections."""
    head_dim = _shape(state, block + "attn.qknorm.qnorm.scale")[0]
    q_rows = _shape(state, block + "attn.wq.weight")[0]
    kv_rows = _shape(state, block + "attn.wk.weight")[0]
    if q_rows % head_dim or kv_rows % head_dim:
        raise ValueError(f"{block}attn: widths {q_rows} / {kv_rows} are not heads of {head_dim}")
    return head_dim, q_rows // head_dim, kv_rows // head_dim


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Krea2Transformer2DModel's config read off the shapes: widths from the projections,
    depths from the block indices, heads from the q norms (heads of 128 in the image stream,
    rope axes (32, 48, 48))."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Krea 2 transformer (txtfusion, blocks) in the file")
    hidden, in_channels = _shape(state, prefix + "first.weight")
    head_dim, heads, kv_heads = _heads(state, prefix + "blocks.0.")
    if head_dim != sum(ROPE_AXES):
        raise ValueError(f"heads of {head_dim} channels; Krea 2's are {sum(ROPE_AXES)}")
    if hidden != head_dim * heads:
        raise ValueError(f"width {hidden} is not {heads} heads of {head_dim}")
    fusion = prefix + "txtfusion."
    _, text_heads, text_kv = _heads(state, fusion + "layerwise_blocks.0.")
    return {
        "in_channels": in_channels,
        "num_layers": count(state, prefix + "blocks."),
        "attention_head_dim": head_dim,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": _shape(state, prefix + "blocks.0.mlp.gate.weight")[0],
        "timestep_embed_dim": _shape(state, prefix + "tmlp.0.weight")[1],
        "text_hidden_dim": _shape(state, prefix + "txtmlp.1.weight")[1],
        "num_text_layers": _shape(state, fusion + "projector.weight")[1],
        "text_num_attention_heads": text_heads,
        "text_num_key_value_heads": text_kv,
        "text_intermediate_size": _shape(state, fusion + "layerwise_blocks.0.mlp.gate.weight")[0],
        "num_layerwise_text_blocks": count(state, fusion + "layerwise_blocks."),
        "num_refiner_text_blocks": count(state, fusion + "refiner_blocks."),
        "axes_dims_rope": list(ROPE_AXES),
        "rope_theta": 1000.0,
        "norm_eps": 1e-5,
    }
