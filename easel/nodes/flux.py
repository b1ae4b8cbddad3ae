"""Flux and flow-matching nodes: TextEncodeFlux and FluxGuidance (the guidance scale Flux dev
embeds), ReferenceLatent (Kontext's reference images), and the model-sampling shifts
ModelSamplingFlux, ModelSamplingSD3 and ModelSamplingAuraFlow (ComfyUI's nodes of those
names)."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Conditioning, Latent, Model
from easel.models.marigold_sampling import FLOW
from easel.models.marigold_sampling import KEY as SAMPLING_KIND
from easel.models.marigold_sampling import KINDS as SAMPLING_KINDS
from easel.nodes.conditioning import empty_prompt
from easel.nodes.loaders import require
from easel.nodes.model_access import model_errors

MAX_RESOLUTION = 16384
# ComfyUI's ModelSamplingFlux: mu grows linearly from base_shift at 256 image tokens to
# max_shift at 4096 (FluxPipeline's calculate_shift); tokens = width * height / (16 * 16).
BASE_TOKENS, MAX_TOKENS, PIXELS_PER_TOKEN = 256, 4096, 16 * 16


@node(category="conditioning", outputs={"conditioning": Conditioning})
def TextEncodeFlux(
    ctx: Context,
    clip: Clip,
    clip_l: str = Input("", multiline=True),
    t5xxl: str = Input("", multiline=True),
    guidance: float = Input(3.5, ge=0.0, le=100.0, step=0.1),
) -> Any:
    """Flux prompt (ComfyUI's CLIPTextEncodeFlux): `clip_l` goes to CLIP-L (its pooled
    embedding), `t5xxl` to the T5 encoder (the embeddings); `guidance` is the scale Flux dev
    embeds (schnell ignores it)."""
    from easel.models.text import encode_prompts

    require(clip, "text encoder (CLIP)", "clip")
    keys = {part.key for part in clip.parts}
    if not {"l", "t5"} <= keys:
        raise NodeError(
            f"TextEncodeFlux needs a Flux CLIP (parts l and t5, from "
            f"DualTextEncoderLoader type flux); this CLIP ({clip.name}) has parts "
            f"{sorted(keys)}: use TextEncode",
            "clip",
        )
    with model_errors("t5xxl"):
        encoded = encode_prompts(clip, {"l": clip_l, "t5": t5xxl})
        uncond = empty_prompt(clip)
    for warning in encoded.warnings:
        ctx.warn(warning)
    cond = {
        **encoded.conditioning,
        "guidance": guidance,
        "uncond": {**uncond, "guidance": guidance},
    }
    return {"conditioning": cond}


@node(category="conditioning", outputs={"conditioning": Conditioning})
def FluxGuidance(
    conditioning: Conditioning, guidance: float = Input(3.5, ge=0.0, le=100.0, step=0.1)
) -> Any:
    """Set the guidance scale Flux dev embeds (ComfyUI's FluxGuidance). Flux samples with
    KSampler `cfg` 1 (no negative pass); this is its guidance."""
    return {"conditioning": {**conditioning, "guidance": guidance}}


@node(category="conditioning", outputs={"conditioning": Conditioning})
def ReferenceLatent(conditioning: Conditioning, latent: Latent | None = None) -> Any:
    """Add a reference image (its latent, from VAEEncode) to the conditioning (ComfyUI's
    ReferenceLatent): Flux Kontext sees it as tokens beside the image it makes. Several
    references add up; with no latent the conditioning passes unchanged."""
    if latent is None:
        return {"conditioning": conditioning}
    references = [*conditioning.get("reference_latents", ()), latent["samples"]]
    return {"conditioning": {**conditioning, "reference_latents": references}}


def _flow_model(model: Any, node_name: str) -> None:
    if getattr(model.family, "prediction_type", None) != "flow":
        label = getattr(model.family, "label", "this model")
        raise NodeError(
            f"{node_name} sets the shift of flow-matching models (Flux); {model.name} is {label}",
            "model",
        )


@node(category="advanced/model", outputs={"model": Model})
def ModelSamplingFlux(
    model: Model,
    max_shift: float = Input(1.15, ge=0.0, le=100.0, step=0.01),
    base_shift: float = Input(0.5, ge=0.0, le=100.0, step=0.01),
    width: int = Input(1024, ge=16, le=MAX_RESOLUTION, step=8),
    height: int = Input(1024, ge=16, le=MAX_RESOLUTION, step=8),
) -> Any:
    """Flux's resolution-dependent shift for a `width` x `height` image: mu = base_shift at
    256 image tokens up to max_shift at 4096, linearly (FluxPipeline's calculate_shift).
    Without this node Easel computes it from the latent being sampled, as FluxPipeline does."""
    _flow_model(model, "ModelSamplingFlux")
    model = _plain_flow(model)
    slope = (max_shift - base_shift) / (MAX_TOKENS - BASE_TOKENS)
    mu = width * height / PIXELS_PER_TOKEN * slope + base_shift - slope * BASE_TOKENS
    return {
        "model": model.with_sampling(
            mu=mu, use_dynamic_shifting=True, base_shift=base_shift, max_shift=max_shift
        )
    }


def _plain_flow(model: Any) -> Any:
    """The model sampled by plain flow matching: ComfyUI's model-sampling nodes replace the
    whole model sampling, so a kind an earlier node set (img_to_img_velocity) goes."""
    from dataclasses import replace

    if SAMPLING_KIND not in model.sampling:
        return model
    return replace(model, sampling={k: v for k, v in model.sampling.items() if k != SAMPLING_KIND})


def _fixed_shift(model: Any, shift: float, node_name: str) -> Any:
    _flow_model(model, node_name)
    model = _plain_flow(model)
    # ComfyUI's fixed shift ends the schedule at 0: no shift_terminal stretch (Qwen-Image's
    # diffusers scheduler config has one; its pipeline keeps it, ComfyUI's nodes do not)
    return {
        "model": model.with_sampling(
            shift=shift, use_dynamic_shifting=False, mu=None, shift_terminal=None
        )
    }


@node(category="advanced/model", outputs={"model": Model})
def ModelSamplingSD3(model: Model, shift: float = Input(3.0, ge=0.0, le=100.0, step=0.01)) -> Any:
    """A fixed flow shift: sigma' = shift * sigma / (1 + (shift - 1) * sigma)."""
    return _fixed_shift(model, shift, "ModelSamplingSD3")


@node(category="advanced/model", outputs={"model": Model})
def ModelSamplingAuraFlow(
    model: Model,
    shift: float = Input(1.73, ge=0.0, le=100.0, step=0.01),
    sampling: str = Input(FLOW, choices=list(SAMPLING_KINDS)),
) -> Any:
    """A fixed flow shift, as ModelSamplingSD3 (ComfyUI's AuraFlow variant, whose only
    difference is the timestep scale the model sees: here the family's own). `sampling`
    "img_to_img_velocity" (Marigold v2's) starts from the input latent with no noise added and
    takes the network's output as the step to the result (denoised = x - output)."""
    out = _fixed_shift(model, shift, "ModelSamplingAuraFlow")
    if sampling == FLOW:
        return out
    return {"model": out["model"].with_sampling(**{SAMPLING_KIND: sampling})}


NODES = [
    TextEncodeFlux,
    FluxGuidance,
    ReferenceLatent,
    ModelSamplingFlux,
    ModelSamplingSD3,
    ModelSamplingAuraFlow,
]
