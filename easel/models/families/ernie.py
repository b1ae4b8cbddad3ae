"""The ERNIE-Image family (ERNIE-Image and ERNIE-Image-Turbo): a single-stream flow-matching
transformer on the Flux.2 VAE's latents (32 channels patchified 2x2: 128 channels at 1/16 of
the image size, normalised by the VAE's batch-norm statistics, as Easel keeps Flux.2's),
conditioned on the second-to-last hidden state of Ministral-3-3B's language model over the
bare prompt (no template; BOS first).

As data: the latent format (Flux.2's), model sampling ("flow" with a fixed shift 3.0, as
ComfyUI's ErnieImage model config and ErnieImagePipeline's scheduler), the text part, and how a
diffusion-model file in ComfyUI's layout (diffusers' own key names, with or without
`model.diffusion_model.`: `x_embedder`, `layers.N.adaLN_sa_ln`, `final_norm`) is recognised and
sized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FlowFamily
from easel.models.families.flux2 import FLUX2_LATENT

# ComfyUI tells Ministral-3-3B from Flux.2's Mistral-Small-3.x (5120) by its width.
MINISTRAL_WIDTH = 3072
MINISTRAL = TextPart("ministral3", layer=-2, layer_norm=False, pad_token="<pad>", hidden_act="silu")

SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": False,
}


@dataclass(frozen=True)
class ErnieFamily(FlowFamily):
    """ERNIE-Image: prompts are encoded by `text_encoding` (easel.models.ernie_text)."""

    text_encoding: str = "easel.models.ernie_text"


ERNIE_IMAGE = ErnieFamily(
    "ernie-image",
    "ERNIE-Image",
    FLUX2_LATENT,
    "flow",
    (MINISTRAL,),
    pipeline_class="ErnieImagePipeline",
    scheduler_config=SCHEDULER,
    network="ernie-image",
    patch=1,
)

FAMILIES = (ERNIE_IMAGE,)

PREFIXES = ("model.diffusion_model.", "")
ROPE_AXES = (32, 48, 48)  # heads of 128 over (text position, row, column)


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where an ERNIE-Image transformer's keys start in `state`, or None."""
    for prefix in PREFIXES:
        if prefix + "layers.0.adaLN_sa_ln.weight" in state and (
            prefix + "x_embedder.proj.weight" in state
        ):
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[ErnieFamily, tuple[str, ...]] | None:
    """(family, evidence) of an ERNIE-Image transformer."""
    if prefix_of(state) is None:
        return None
    return ERNIE_IMAGE, ("x_embedder / layers.N.adaLN_sa_ln / final_norm: ERNIE-Image",)


def count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """ErnieImageTransformer2DModel's config read off the shapes: width, input channels and
    patch from the patch embedding, heads from the q norm (heads of 128), depth from the layer
    indices, the text width from text_proj (absent when it equals the model's)."""

    found = prefix_of(state)
    if found is None:
        raise ValueError("no ERNIE-Image transformer (x_embedder, layers) in the file")
    prefix: str = found

    def shape(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in state[prefix + key].shape)

    hidden, in_channels, patch, _ = shape("x_embedder.proj.weight")
    head_dim = shape("layers.0.self_attention.norm_q.weight")[0]
    if head_dim != sum(ROPE_AXES) or hidden % head_dim:
        raise ValueError(f"width {hidden} is not heads of {sum(ROPE_AXES)} (ERNIE-Image's)")
    text_dim = shape("text_proj.weight")[1] if prefix + "text_proj.weight" in state else hidden
    return {
        "hidden_size": hidden,
        "num_attention_heads": hidden // head_dim,
        "num_layers": count(state, prefix + "layers."),
        "ffn_hidden_size": shape("layers.0.mlp.gate_proj.weight")[0],
        "in_channels": in_channels,
        "out_channels": shape("final_linear.weight")[0] // (patch * patch),
        "patch_size": patch,
        "text_in_dim": text_dim,
        "rope_theta": 256,
        "rope_axes_dim": list(ROPE_AXES),
        "eps": 1e-6,
        "qk_layernorm": True,
    }
