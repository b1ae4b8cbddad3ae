"""The Flux 3 families (Klein base and Klein step-distilled): a flow-matching transformer with
three token modes (the noisy image, reference images, the text) that first run through blocks
of their own, then through joint single blocks; on the Flux.2 VAE's latents (32 channels
patchified 2x2: 128 channels at 1/16 of the image size), conditioned on the hidden states of
Qwen3-VL layers 4, 8, ..., 32 stacked per token, with position ids of 4 axes (t, h, w, l), the
image's h and w scaled by 0.5 and reference images told apart on l (-1, -2, ...).

As data: the latent format (Flux.2's: ComfyUI's EmptyFlux2LatentImage, normalised by the VAE's
batch-norm statistics), model sampling ("flow" with the constant shift 6.93 of diffusers'
Flux3SetTimestepsStep), the text encoder, and how a file in Black Forest Labs' key layout
(`content_mode_blocks` / `txt_mode_blocks` / `single_blocks`, `early_stream_modulations`) is
recognised and sized. The distilled model is a flow map: it also embeds the timestep each step
jumps to (`ref_time_in`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FlowFamily
from easel.models.families.flux2 import FLUX2_LATENT

# The Qwen3-VL hidden layers Flux3TextEncoderStep stacks (its text_encoder_out_layers).
TEXT_LAYERS = (4, 8, 12, 16, 20, 24, 28, 32)
PAD_MULTIPLE = 80  # the prompt is right-padded to a multiple of 80 tokens (the model's recipe)
MAX_TEXT_TOKENS = 8192  # Flux3TextEncoderStep's max_sequence_length
ROPE_AXES = 4  # t, h, w, l: every head's channels split in four equal rope axes
ROPE_THETA = 10000
IMAGE_ROPE_SCALE = 0.5  # the image's h and w position ids are scaled by this (trained so)
SHIFT = 6.93  # Flux3SetTimestepsStep's constant shift
DEFAULT_CFG = 3.5  # the base model's classifier-free guidance scale (Flux3DenoiseStep)

SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": SHIFT,
    "use_dynamic_shifting": False,
}

QWEN3VL_TEXT = TextPart("qwen3vl", layer=-1, layer_norm=False, pad_token="<|endoftext|>")


@dataclass(frozen=True)
class Flux3Family(FlowFamily):
    """A Flux 3 model; `flow_map` (the step-distilled checkpoints) means the network also
    takes the timestep each step jumps to."""

    flow_map: bool = False
    text_encoding: str = "easel.models.flux3_text"


FLUX3 = Flux3Family(
    "flux3",
    "Flux 3 Klein",
    FLUX2_LATENT,
    "flow",
    (QWEN3VL_TEXT,),
    pipeline_class="Flux3ModularPipeline",
    scheduler_config=SCHEDULER,
    network="flux3",
    patch=1,
)
FLUX3_DISTILLED = replace(
    FLUX3,
    name="flux3-distilled",
    label="Flux 3 Klein (distilled)",
    pipeline_class="Flux3DistilledModularPipeline",
    flow_map=True,
)

FAMILIES = (FLUX3, FLUX3_DISTILLED)

PREFIXES = ("model.diffusion_model.", "")
MARKER = "early_stream_modulations.image.lin.weight"  # Flux 3's per-mode modulation


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Flux 3 transformer's keys start in `state`, or None when there is none."""
    for prefix in PREFIXES:
        if prefix + MARKER in state and prefix + "emb_in.image.weight" in state:
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[Flux3Family, tuple[str, ...]] | None:
    """(family, evidence) of a Flux 3 transformer in the original key layout, or None. The
    step-distilled model embeds a second timestep (`ref_time_in`)."""
    prefix = prefix_of(state)
    if prefix is None:
        return None
    evidence = ["per-mode blocks and modulations (Flux 3 transformer)"]
    if prefix + "ref_time_in.in_layer.weight" in state:
        return FLUX3_DISTILLED, (*evidence, "a target-timestep embedding: step-distilled")
    return FLUX3, (*evidence, "no target-timestep embedding: base")


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Flux3Transformer2DModel's config read off the shapes: width and channels from the input
    projections, head width from the query norm, depths from the block indices, MLP ratio from
    the first MLP, rope axes a quarter of a head each; rope theta is not in the shapes (the
    released 10000)."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Flux 3 transformer (early_stream_modulations) in the file")

    def shape(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in state[prefix + key].shape)

    hidden, in_channels = shape("emb_in.image.weight")
    cond_key = "emb_in.image_cond.weight"
    cond_channels = shape(cond_key)[1] if prefix + cond_key in state else in_channels
    head = shape("single_blocks.0.norm.query_norm.scale")[0]
    if hidden % head or head % ROPE_AXES:
        raise ValueError(f"width {hidden} does not split into heads of {head}")
    mlp = shape("single_blocks.0.mlp_in.weight")[0] // 2  # SwiGLU: gate and value fused
    return {
        "in_channels": in_channels,
        "cond_in_channels": cond_channels,
        "num_layers": _count(state, prefix + "txt_mode_blocks."),
        "num_single_layers": _count(state, prefix + "single_blocks."),
        "attention_head_dim": head,
        "num_attention_heads": hidden // head,
        "joint_attention_dim": shape("txt_in.weight")[1],
        "timestep_channels": shape("time_in.in_layer.weight")[1],
        "mlp_ratio": mlp / hidden,
        "axes_dims_rope": [head // ROPE_AXES] * ROPE_AXES,
        "rope_theta": ROPE_THETA,
        "flow_map": prefix + "ref_time_in.in_layer.weight" in state,
    }


def family_of(config: Any) -> Flux3Family:
    """The family of a Flux3Transformer2DModel (its config): distilled when it is a flow map;
    a model on other than 128 latent channels (a test model) keeps its own."""

    def get(key: str) -> Any:
        return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)

    family = FLUX3_DISTILLED if get("flow_map") else FLUX3
    channels = int(get("in_channels") or FLUX2_LATENT.channels)
    if channels != family.latent.channels:
        family = replace(family, latent=replace(family.latent, channels=channels))
    return family
