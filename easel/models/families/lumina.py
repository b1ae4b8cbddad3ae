"""The Lumina families: Z-Image (Turbo and base) and Lumina-Image 2.0. Both are flow-matching
single-stream transformers (NextDiT) on the Flux VAE's 16-channel latents in 2x2 patches,
conditioned on the hidden states of a causal language model: Qwen3-4B for Z-Image, Gemma-2-2B
for Lumina 2 (its second-to-last layer, as ZImagePipeline and Lumina2Pipeline take it).

As data: latent format (the Flux VAE: scaling 0.3611, shift 0.1159), model sampling ("flow"
with each model's diffusers scheduler shift: Z-Image 3.0, Lumina 2 6.0, as ComfyUI's
model configs and ModelSamplingAuraFlow templates set them), text parts, and how a file in
the original key layout (ComfyUI's `diffusion_models/` files: `cap_embedder`, `layers.N`,
`noise_refiner`, `context_refiner`; with or without `model.diffusion_model.`) is recognised
and sized. Both have the same key names; Z-Image's blocks take their modulation through one
linear layer (`adaLN_modulation.0`) and it has pad tokens, Lumina 2's through SiLU + linear
(`adaLN_modulation.1`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FLUX_LATENT, FlowFamily

LUMINA_LATENT = FLUX_LATENT  # both pipelines ship the Flux VAE (16 channels, 0.3611, 0.1159)

# ZImagePipeline: the Qwen3 chat template for one user message, thinking enabled (no empty
# <think> block), and the second-to-last hidden state of the tokens (padding dropped).
ZIMAGE_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
ZIMAGE_MAX_TOKENS = 512
# Lumina2Pipeline: its system prompt, " <Prompt Start> ", then the prompt; padded to 256.
LUMINA2_SYSTEM_PROMPT = (
    "You are an assistant designed to generate superior images with the superior degree of "
    "image-text alignment based on textual prompts or user prompts."
)
LUMINA2_SEPARATOR = " <Prompt Start> "
LUMINA2_MAX_TOKENS = 256

QWEN3 = TextPart("qwen3", layer=-2, layer_norm=False, pad_token="<|endoftext|>", hidden_act="silu")
GEMMA2 = TextPart("gemma2", layer=-2, layer_norm=False, pad_token="<pad>", hidden_act="gelu")

# Z-Image-Turbo's and Lumina-Image-2.0's diffusers scheduler configs.
ZIMAGE_SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": False,
}
LUMINA2_SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 6.0,
    "use_dynamic_shifting": False,
}


@dataclass(frozen=True)
class LuminaFamily(FlowFamily):
    """A Lumina-style flow family: prompts are encoded by `text_encoding` (a module with
    `encode_prompts(clip, texts)`), with the family's own template around the prompt."""

    text_encoding: str = "easel.models.lumina_text"


ZIMAGE = LuminaFamily(
    "z-image",
    "Z-Image",
    LUMINA_LATENT,
    "flow",
    (QWEN3,),
    pipeline_class="ZImagePipeline",
    scheduler_config=ZIMAGE_SCHEDULER,
    network="z-image",
)
LUMINA2 = LuminaFamily(
    "lumina2",
    "Lumina-Image 2.0",
    LUMINA_LATENT,
    "flow",
    (GEMMA2,),
    pipeline_class="Lumina2Pipeline",
    scheduler_config=LUMINA2_SCHEDULER,
    network="lumina2",
)

FAMILIES = (ZIMAGE, LUMINA2)

PREFIXES = ("model.diffusion_model.", "")
# Z-Image: heads of 128 channels, rope axes (32, 48, 48) over (text/frame, row, column);
# Lumina 2: heads of 96, axes (32, 32, 32). Both read as ComfyUI's model detection does.
ZIMAGE_AXES = (32, 48, 48)
ZIMAGE_AXES_LENS = (1536, 512, 512)
LUMINA2_AXES = (32, 32, 32)
LUMINA2_AXES_LENS = (300, 512, 512)


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Lumina-style transformer's keys start in `state`, or None."""
    for prefix in PREFIXES:
        if prefix + "cap_embedder.1.weight" in state and (
            prefix + "layers.0.attention.qkv.weight" in state
            or prefix + "noise_refiner.0.attention.qkv.weight" in state
        ):
            return prefix
    return None


def is_zimage(state: Mapping[str, Any], prefix: str) -> bool:
    """Z-Image's blocks modulate through one linear layer; Lumina 2's through SiLU + linear."""
    return prefix + "layers.0.adaLN_modulation.0.weight" in state


def recognise(state: Mapping[str, Any]) -> tuple[LuminaFamily, tuple[str, ...]] | None:
    """(family, evidence) of a Z-Image or Lumina 2 transformer in the original layout."""
    prefix = prefix_of(state)
    if prefix is None:
        return None
    evidence = "cap_embedder / layers / noise_refiner (a Lumina-style NextDiT)"
    if is_zimage(state, prefix):
        return ZIMAGE, (evidence, "single-linear block modulation (adaLN_modulation.0): Z-Image")
    return LUMINA2, (evidence, "SiLU + linear block modulation (adaLN_modulation.1): Lumina 2")


def count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in state[key].shape)


def _heads(state: Mapping[str, Any], prefix: str, dim: int) -> tuple[int, int, int]:
    """(head_dim, heads, kv heads) from the per-head q norm and the fused qkv rows."""
    head_dim = _shape(state, prefix + "layers.0.attention.q_norm.weight")[0]
    rows = _shape(state, prefix + "layers.0.attention.qkv.weight")[0]
    if dim % head_dim or (rows - dim) % (2 * head_dim):
        raise ValueError(f"width {dim} and qkv rows {rows} do not split into heads of {head_dim}")
    return head_dim, dim // head_dim, (rows - dim) // (2 * head_dim)


def zimage_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """ZImageTransformer2DModel's config read off the shapes (as ComfyUI's model detection:
    width and caption width from cap_embedder, depth from the block indices, heads of 128)."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Z-Image transformer (cap_embedder, layers) in the file")
    dim, cap_dim = _shape(state, prefix + "cap_embedder.1.weight")
    head_dim, heads, kv_heads = _heads(state, prefix, dim)
    if head_dim != sum(ZIMAGE_AXES):
        raise ValueError(f"heads of {head_dim} channels; Z-Image's are {sum(ZIMAGE_AXES)}")
    patch_in = _shape(state, prefix + "x_embedder.weight")[1]
    return {
        "all_patch_size": [2],
        "all_f_patch_size": [1],
        "in_channels": patch_in // 4,
        "dim": dim,
        "n_layers": count(state, prefix + "layers."),
        "n_refiner_layers": count(state, prefix + "noise_refiner."),
        "n_heads": heads,
        "n_kv_heads": kv_heads,
        "norm_eps": 1e-5,
        "qk_norm": True,
        "cap_feat_dim": cap_dim,
        "rope_theta": 256.0,
        "t_scale": 1000.0,
        "axes_dims": list(ZIMAGE_AXES),
        "axes_lens": list(ZIMAGE_AXES_LENS),
    }


def lumina2_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Lumina2Transformer2DModel's config read off the shapes. The feed-forward width is
    diffusers' `multiple_of * ceil(ffn_dim_multiplier * 4 * dim / multiple_of)`: Lumina 2's own
    (256, None) when that gives the file's width, else a multiplier giving it exactly."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Lumina 2 transformer (cap_embedder, layers) in the file")
    dim, cap_dim = _shape(state, prefix + "cap_embedder.1.weight")
    head_dim, heads, kv_heads = _heads(state, prefix, dim)
    if head_dim != sum(LUMINA2_AXES):
        raise ValueError(f"heads of {head_dim} channels; Lumina 2's are {sum(LUMINA2_AXES)}")
    inner = _shape(state, prefix + "layers.0.feed_forward.w1.weight")[0]
    multiple_of, multiplier = 256, None
    if 256 * -(-4 * dim // 256) != inner:
        multiple_of, multiplier = 1, (inner + 0.5) / (4 * dim)
    patch_in = _shape(state, prefix + "x_embedder.weight")[1]
    out = _shape(state, prefix + "final_layer.linear.weight")[0]
    return {
        "sample_size": 128,
        "patch_size": 2,
        "in_channels": patch_in // 4,
        "out_channels": out // 4,
        "hidden_size": dim,
        "num_layers": count(state, prefix + "layers."),
        "num_refiner_layers": count(state, prefix + "noise_refiner."),
        "num_attention_heads": heads,
        "num_kv_heads": kv_heads,
        "multiple_of": multiple_of,
        "ffn_dim_multiplier": multiplier,
        "norm_eps": 1e-5,
        "scaling_factor": 1.0,
        "axes_dim_rope": list(LUMINA2_AXES),
        "axes_lens": list(LUMINA2_AXES_LENS),
        "cap_feat_dim": cap_dim,
    }
