"""The Anima family (CircleStone Labs / Comfy Org): Cosmos-Predict2-2B's DiT (diffusers'
CosmosTransformer3DModel, one frame) with an "LLM adapter" in front of it (diffusers'
AnimaTextConditioner) that turns a Qwen3-0.6B's last hidden states into the DiT's
cross-attention context, its queries embedded from the prompt's T5 token ids; decoded by the
Qwen-Image VAE (the Wan 2.1 VAE, one frame).

As data: the latent format (the Qwen VAE's: Easel keeps latents normalised per channel, see
easel.models.qwen_vae), model sampling ("flow" with ComfyUI's fixed shift of 3, its
supported_models.Anima; the network sees the sigma itself as its timestep), the one text part
(the Qwen3; the T5 tokenizer rides along with it), and how ComfyUI's diffusion-model file is
recognised and sized: Cosmos-Predict2's original keys (`blocks.N.mlp.layer1`,
`adaln_modulation_cross_attn`) plus `llm_adapter.blocks.N.cross_attn` (what ComfyUI's
model_detection tells Anima from plain Cosmos by), with or without `net.` /
`model.diffusion_model.`; or diffusers' keys (`transformer_blocks.N.attn2`, `patch_embed`) with
the adapter as `text_conditioner.` / `llm_adapter.`.

The RoPE scale is not in the file: Anima is Cosmos-Predict2-2B text-to-image, whose DiT scales
its rotary positions (1, 4, 4) (temporal, height, width), as diffusers' Cosmos 2.0 2B
text-to-image config and ComfyUI's detection of that model say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FlowFamily
from easel.models.families.qwen_image import QWEN_LATENT

PREFIXES = ("model.diffusion_model.net.", "model.diffusion_model.", "net.", "transformer.", "")
ORIGINAL_PROBES = ("blocks.0.mlp.layer1.weight", "blocks.0.adaln_modulation_cross_attn.1.weight")
DIFFUSERS_PROBES = ("transformer_blocks.0.attn2.to_q.weight", "patch_embed.proj.weight")
ADAPTER_PREFIXES = ("llm_adapter.", "text_conditioner.")
ADAPTER_PROBE = "blocks.0.cross_attn.q_proj.weight"
ROPE_SCALE = (1.0, 4.0, 4.0)  # Cosmos-Predict2-2B text-to-image
MAX_SIZE = (128, 240, 240)
MIN_TOKENS = 512  # the adapter's output is padded to 512 tokens (ComfyUI, diffusers)
T5_VOCAB = 32128
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": False,
}
ANIMA_TEXT = TextPart("qwen3", pad_token="<|endoftext|>", hidden_act="silu")


@dataclass(frozen=True)
class AnimaFamily(FlowFamily):
    """Anima: its own network adapter (the LLM adapter, then the Cosmos DiT) and text
    encoding (Qwen3 hidden states and T5 token ids)."""

    network: str = "anima"
    text_encoding: str = "easel.models.anima_text"


ANIMA = AnimaFamily(
    "anima",
    "Anima",
    QWEN_LATENT,
    "flow",
    (ANIMA_TEXT,),
    pipeline_class="AnimaModularPipeline",
    scheduler_config=SCHEDULER,
)
FAMILIES = (ANIMA,)


@dataclass(frozen=True)
class Layout:
    """Where an Anima diffusion model's parts are in a state dict: the DiT's key layout
    ("original" Cosmos keys or "diffusers") and prefix, and the LLM adapter's prefix."""

    kind: str
    prefix: str
    adapter: str


def layout_of(state: Mapping[str, Any]) -> Layout | None:
    """The layout of an Anima DiT with its LLM adapter in `state`, or None (a plain
    Cosmos-Predict2 file, without the adapter, is not Anima)."""
    for prefix in PREFIXES:
        if all(prefix + probe in state for probe in ORIGINAL_PROBES):
            kind = "original"
        elif all(prefix + probe in state for probe in DIFFUSERS_PROBES):
            kind = "diffusers"
        else:
            continue
        for adapter in ADAPTER_PREFIXES:
            if prefix + adapter + ADAPTER_PROBE in state:
                return Layout(kind, prefix, prefix + adapter)
    return None


def recognise(state: Mapping[str, Any]) -> tuple[AnimaFamily, tuple[str, ...]] | None:
    """(family, evidence) of an Anima diffusion model, or None."""
    found = layout_of(state)
    if found is None:
        return None
    if found.kind == "diffusers":
        return ANIMA, ("transformer_blocks with attn2 and an LLM adapter (Anima)",)
    return ANIMA, ("Cosmos-Predict2 blocks with llm_adapter (Anima)",)


def count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """CosmosTransformer3DModel's config read off the shapes (either layout)."""
    found = layout_of(state)
    if found is None:
        raise ValueError("no Anima diffusion model (Cosmos-Predict2 blocks with llm_adapter)")
    p = found.prefix
    if found.kind == "original":
        embed = tuple(state[p + "x_embedder.proj.1.weight"].shape)
        head = int(state[p + "blocks.0.self_attn.q_norm.weight"].shape[0])
        text = int(state[p + "blocks.0.cross_attn.k_proj.weight"].shape[1])
        lora = int(state[p + "blocks.0.adaln_modulation_self_attn.1.weight"].shape[0])
        mlp = int(state[p + "blocks.0.mlp.layer1.weight"].shape[0])
        out = int(state[p + "final_layer.linear.weight"].shape[0])
        layers = count(state, p + "blocks.")
        learnable = p + "extra_pos_embedder.pos_emb_h" in state
    else:
        embed = tuple(state[p + "patch_embed.proj.weight"].shape)
        head = int(state[p + "transformer_blocks.0.attn1.norm_q.weight"].shape[0])
        text = int(state[p + "transformer_blocks.0.attn2.to_k.weight"].shape[1])
        lora = int(state[p + "transformer_blocks.0.norm1.linear_1.weight"].shape[0])
        mlp = int(state[p + "transformer_blocks.0.ff.net.0.proj.weight"].shape[0])
        out = int(state[p + "proj_out.weight"].shape[0])
        layers = count(state, p + "transformer_blocks.")
        learnable = p + "learnable_pos_embed.pos_emb_h" in state
    hidden, patched = int(embed[0]), int(embed[1])
    if hidden % head:
        raise ValueError(f"width {hidden} is not a multiple of the heads' {head} channels")
    patch = 2  # Cosmos-Predict2: 2x2 spatial patches, one frame
    channels = out // (patch * patch)
    return {
        "in_channels": channels,
        "out_channels": channels,
        "num_attention_heads": hidden // head,
        "attention_head_dim": head,
        "num_layers": layers,
        "mlp_ratio": mlp / hidden,
        "text_embed_dim": text,
        "adaln_lora_dim": lora,
        "max_size": list(MAX_SIZE),
        "patch_size": [1, patch, patch],
        "rope_scale": list(ROPE_SCALE),
        "concat_padding_mask": patched == (channels + 1) * patch * patch,
        "extra_pos_embed_type": "learnable" if learnable else None,
    }


def adapter_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """AnimaTextConditioner's config read off the LLM adapter's shapes."""
    found = layout_of(state)
    if found is None:
        raise ValueError("no Anima LLM adapter (llm_adapter.blocks.N.cross_attn)")
    a = found.adapter
    vocab, target = (int(n) for n in state[a + "embed.weight"].shape)
    model_dim, source = (int(n) for n in state[a + "blocks.0.cross_attn.k_proj.weight"].shape)
    head = int(state[a + "blocks.0.cross_attn.q_norm.weight"].shape[0])
    mlp = int(state[a + "blocks.0.mlp.0.weight"].shape[0])
    norm = state.get(a + "blocks.0.norm_cross_attn.bias")
    return {
        "source_dim": source,
        "target_dim": target,
        "model_dim": model_dim,
        "num_layers": count(state, a + "blocks."),
        "num_attention_heads": model_dim // head,
        "mlp_ratio": mlp / model_dim,
        "target_vocab_size": vocab,
        "use_self_attention": a + "blocks.0.self_attn.q_proj.weight" in state,
        "use_layer_norm": norm is not None,
        "min_sequence_length": MIN_TOKENS,
    }
