"""The Flux.1 families (dev, schnell, Fill, Canny/Depth): a flow-matching transformer on
16-channel latents packed 2x2, conditioned on T5-XXL hidden states plus CLIP-L's pooled
embedding (and, for dev, Fill and Canny/Depth, an embedded guidance scale).

As data: latent format (diffusers' Flux VAE config: scaling 0.3611, shift 0.1159), model
sampling ("flow", with the shift of each model's diffusers scheduler config), text parts, and
how a file in Black Forest Labs' original key layout (`double_blocks` / `single_blocks`, with
or without `model.diffusion_model.`) is recognised and sized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import Family, LatentFormat, TextPart

FLUX_LATENT = LatentFormat(channels=16, scaling_factor=0.3611, shift_factor=0.1159, factor=8)
# ComfyUI's Flux text encoders: CLIP-L (only its pooled output is used) and T5-XXL.
FLUX_CLIP_L = TextPart("l", layer=-1, layer_norm=True, pooled=True, hidden_act="quick_gelu")
FLUX_T5 = TextPart("t5", pad_token="<pad>", hidden_act="gelu_new")
HEAD_DIM = 128  # every Flux.1 transformer: heads of 128 channels, rope axes (16, 56, 56)
ROPE_AXES = (16, 56, 56)
T5_MIN_TOKENS = 256  # ComfyUI pads Flux's T5 prompt to 256 tokens (FluxPipeline: 512 by default)
T5_MAX_TOKENS = 512
DEFAULT_GUIDANCE = 3.5  # ComfyUI's and FluxPipeline's default embedded guidance

# FLUX.1-dev's and -schnell's diffusers scheduler configs (scheduler/scheduler_config.json).
DEV_SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
SCHNELL_SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
}


@dataclass(frozen=True)
class FlowFamily(Family):
    """A flow-matching family: `prediction_type` "flow" (the network predicts the velocity
    noise - image, sigmas shifted as `scheduler_config` says), the `network` adapter the
    sampler calls it through (easel.models.sampling.network_for), how latents are packed into
    tokens (`patch`), and whether the network embeds a guidance scale."""

    network: str = "flux"
    patch: int = 2
    guidance_embeds: bool = False


FLUX_DEV = FlowFamily(
    "flux-dev",
    "Flux.1 dev",
    FLUX_LATENT,
    "flow",
    (FLUX_CLIP_L, FLUX_T5),
    pipeline_class="FluxPipeline",
    scheduler_config=DEV_SCHEDULER,
    guidance_embeds=True,
)
FLUX_SCHNELL = FlowFamily(
    "flux-schnell",
    "Flux.1 schnell",
    FLUX_LATENT,
    "flow",
    (FLUX_CLIP_L, FLUX_T5),
    pipeline_class="FluxPipeline",
    scheduler_config=SCHNELL_SCHEDULER,
    guidance_embeds=False,
)

# Fill: dev's transformer taking the masked image's latent and the mask as 320 more channels
# per token (packed as FluxFillPipeline packs them); fed by InpaintModelConditioning.
FLUX_FILL = FlowFamily(
    "flux-fill",
    "Flux.1 Fill",
    FLUX_LATENT,
    "flow",
    (FLUX_CLIP_L, FLUX_T5),
    inpaint=True,
    pipeline_class="FluxFillPipeline",
    scheduler_config=DEV_SCHEDULER,
    guidance_embeds=True,
)
FILL_IN_CHANNELS = 384  # 64 (latent) + 64 (masked image latent) + 256 (8x8 mask, packed)

# Canny / Depth (FLUX.1-Canny-dev, FLUX.1-Depth-dev): dev's transformer taking the control
# image's latent (a Canny or depth map, VAE-encoded) as 64 more channels per token, packed as
# FluxControlPipeline packs it; fed by InstructPixToPixConditioning.
FLUX_CONTROL = FlowFamily(
    "flux-control",
    "Flux.1 Canny/Depth",
    FLUX_LATENT,
    "flow",
    (FLUX_CLIP_L, FLUX_T5),
    pipeline_class="FluxControlPipeline",
    scheduler_config=DEV_SCHEDULER,
    guidance_embeds=True,
)
CONTROL_IN_CHANNELS = 128  # 64 (latent) + 64 (control image latent)

FAMILIES = (FLUX_DEV, FLUX_SCHNELL, FLUX_FILL, FLUX_CONTROL)

PREFIXES = ("model.diffusion_model.", "")


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Flux transformer's keys start in `state`, or None when there is none (also for
    Flux.2's, whose blocks share one modulation: easel.models.families.flux2)."""
    for prefix in PREFIXES:
        if prefix + "double_stream_modulation_img.lin.weight" in state:
            return None
        if prefix + "distilled_guidance_layer.in_proj.weight" in state:
            return None  # Chroma (easel.models.families.chroma)
        if prefix + "double_blocks.0.img_attn.qkv.weight" in state:
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[FlowFamily, tuple[str, ...]] | None:
    """(family, evidence) of a Flux transformer in the original key layout, or None. dev
    embeds a guidance scale (`guidance_in`); schnell does not."""
    prefix = prefix_of(state)
    if prefix is None:
        return None
    evidence = ["double_blocks / single_blocks (Flux.1 transformer)"]
    img_in = state.get(prefix + "img_in.weight")
    if img_in is not None and int(img_in.shape[1]) == FILL_IN_CHANNELS:
        return FLUX_FILL, (*evidence, f"{FILL_IN_CHANNELS} input channels: Fill")
    if img_in is not None and int(img_in.shape[1]) == CONTROL_IN_CHANNELS:
        return FLUX_CONTROL, (*evidence, f"{CONTROL_IN_CHANNELS} input channels: Canny/Depth")
    if prefix + "guidance_in.in_layer.weight" in state:
        return FLUX_DEV, (*evidence, "a guidance embedding (guidance_in): dev")
    return FLUX_SCHNELL, (*evidence, "no guidance embedding: schnell")


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """FluxTransformer2DModel's config read off the shapes (as ComfyUI's model detection):
    width from img_in, depth from the block indices, heads of 128."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Flux transformer (double_blocks) in the file")
    img_in = tuple(state[prefix + "img_in.weight"].shape)
    hidden = int(img_in[0])
    if hidden % HEAD_DIM:
        raise ValueError(f"width {hidden} is not a multiple of Flux's heads of {HEAD_DIM}")
    return {
        "patch_size": 1,
        "in_channels": int(img_in[1]),
        "out_channels": int(state[prefix + "final_layer.linear.weight"].shape[0]),
        "num_layers": _count(state, prefix + "double_blocks."),
        "num_single_layers": _count(state, prefix + "single_blocks."),
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": int(state[prefix + "txt_in.weight"].shape[1]),
        "pooled_projection_dim": int(state[prefix + "vector_in.in_layer.weight"].shape[1]),
        "guidance_embeds": prefix + "guidance_in.in_layer.weight" in state,
        "axes_dims_rope": list(ROPE_AXES),
    }


def folder_family(config: Any) -> FlowFamily:
    """The family of a diffusers Flux transformer (its config)."""

    def get(key: str) -> Any:
        return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)

    if get("in_channels") == FILL_IN_CHANNELS:
        return FLUX_FILL
    if get("in_channels") == CONTROL_IN_CHANNELS:
        return FLUX_CONTROL
    return FLUX_DEV if get("guidance_embeds") else FLUX_SCHNELL
