"""The Fibo 2.0 family (Bria): a flow-matching transformer (Z-Image's blocks, a Perceiver that
squeezes the text into gist tokens, and cross-attention injection blocks) on the Flux.2 VAE's
latents (32 channels at 1/8; Easel keeps them patchified 2x2, 128 channels at 1/16, normalised
with the VAE's batch-norm statistics: Easel's Flux.2 latent space), conditioned on six bundles of
three Qwen3-VL-4B hidden states each, every layer scaled to unit RMS per token
(diffusers' BriaFibo2Pipeline).

As data: the latent format (Flux.2's), model sampling ("flow", the pipeline's resolution-
dependent shift), the text part, and how a diffusion-model file is recognised and sized.

Assumptions (ComfyUI's Fibo 2 code is not available to read):
- The diffusion-model file is read in diffusers' BriaFibo2Transformer2DModel keys (with or
  without `model.diffusion_model.`): ComfyUI's own layout for Fibo 2 could not be checked.
- Config values no shape shows (rope axes and theta, the gist-count schedule, t_scale) are
  diffusers' defaults for BriaFibo2Transformer2DModel; the patch size is 2.
- The sampling shift is the pipeline's: FlowMatchEulerDiscreteScheduler with dynamic shifting
  (Flux's calculate_shift, 0.5 .. 1.15 over 256 .. 4096 image tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FlowFamily
from easel.models.families.flux2 import FLUX2_LATENT

# BriaFibo2Pipeline's TEXT_ENCODER_OUT_LAYERS: indices into transformers' hidden_states (0: the
# embeddings), the Perceiver's bundle first, then one per injection block.
OUT_LAYERS: tuple[tuple[int, ...], ...] = (
    (9, 20, 31),
    (5, 16, 27),
    (7, 18, 29),
    (9, 20, 31),
    (11, 22, 33),
    (13, 24, 35),
)
PROMPT_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
PATCH = 2

QWEN3VL_4B = TextPart(
    "qwen3vl", layer=-1, layer_norm=False, pad_token="<|endoftext|>", hidden_act="silu"
)

SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}


@dataclass(frozen=True)
class Fibo2Family(FlowFamily):
    """Fibo 2.0: prompts are encoded by `text_encoding` (easel.models.fibo2_text)."""

    text_encoding: str = "easel.models.fibo2_text"


FIBO2 = Fibo2Family(
    "fibo2",
    "Fibo 2.0",
    FLUX2_LATENT,
    "flow",
    (QWEN3VL_4B,),
    pipeline_class="BriaFibo2Pipeline",
    scheduler_config=SCHEDULER,
    network="fibo2",
    patch=1,  # the latents are already in 2x2 patches: image tokens = h * w
)

FAMILIES = (FIBO2,)

PREFIXES = ("model.diffusion_model.", "")
SIGNATURE = (
    "perceiver.latent_queries",
    "x_embedder.weight",
    "noise_refiner.0.attention.to_q.weight",
    "final_layer.linear.weight",
)


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Fibo 2.0 transformer's keys start in `state`, or None."""
    for prefix in PREFIXES:
        if all(prefix + key in state for key in SIGNATURE):
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[Fibo2Family, tuple[str, ...]] | None:
    """(family, evidence) of a Fibo 2.0 transformer."""
    if prefix_of(state) is None:
        return None
    return FIBO2, ("perceiver.latent_queries / noise_refiner / layers.N: Fibo 2.0",)


def indices(state: Mapping[str, Any], head: str) -> set[int]:
    return {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}


def count(state: Mapping[str, Any], head: str) -> int:
    found = indices(state, head)
    return max(found) + 1 if found else 0


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in state[key].shape)


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """BriaFibo2Transformer2DModel's config read off the shapes (keys without prefix); the
    rest are diffusers' defaults (see the module's assumptions)."""
    dim, patched = _shape(state, "x_embedder.weight")
    head_dim = _shape(state, "layers.0.attention.norm_q.weight")[0]
    if dim % head_dim or patched % (PATCH * PATCH):
        raise ValueError(f"width {dim} is not heads of {head_dim}, or {patched} not 2x2 patches")
    injection = sorted(
        i for i in indices(state, "layers.") if f"layers.{i}.cross_attention.to_k.weight" in state
    )
    if not injection:
        raise ValueError("no injection block (layers.N.cross_attention) in the file")
    cap = _shape(state, f"layers.{injection[0]}.cross_attention.to_k.weight")[1]
    queries = _shape(state, "perceiver.latent_queries")[0]
    return {
        "in_channels": patched // (PATCH * PATCH),
        "patch_size": PATCH,
        "dim": dim,
        "n_layers": count(state, "layers."),
        "n_refiner_layers": count(state, "noise_refiner."),
        "n_heads": dim // head_dim,
        "cap_feat_dim": cap,
        "injection_layer_ids": injection,
        "perceiver_num_layers": count(state, "perceiver.layers."),
        "max_num_gist_tokens": queries,
        "min_num_gist_tokens": min(256, queries),
    }
