"""The table that maps ComfyUI node types onto Easel node types (data, one entry per type)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# What ComfyUI's frontend stores after a seed widget; never an input of the backend.
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})

# ComfyUI's "*_gpu" samplers are the same algorithm with noise drawn on the GPU.
SAMPLER_NAMES = {"dpmpp_2m_sde_gpu": "dpmpp_2m_sde", "dpmpp_sde_gpu": "dpmpp_sde"}
# Pixel upscaling (Upscale) names nearest-neighbour "nearest"; LatentUpscale keeps ComfyUI's.
UPSCALE_METHODS = {"nearest-exact": "nearest", "bilinear": "bilinear", "area": "area",
                   "bicubic": "bicubic", "lanczos": "lanczos"}
LATENT_METHODS = {name: name for name in ("nearest-exact", "bilinear", "area", "bicubic")}


@dataclass
class Adapted:
    """What a node-specific adapter decided: Easel inputs, problems, or a pass-through."""

    inputs: dict[str, Any]
    problems: list[tuple[str | None, str]] = field(default_factory=list)
    passthrough: str | None = None  # Easel input whose source replaces this node's output


Adapter = Callable[[dict[str, Any]], Adapted]


@dataclass(frozen=True)
class NodeMap:
    """How one ComfyUI node type becomes an Easel node.

    `inputs` renames ComfyUI inputs to Easel inputs; `outputs` names the Easel output of each
    ComfyUI output slot (None: no equivalent); `widgets` is the order of `widgets_values` in the
    UI format, and `seeded` the widgets that may be followed by a control_after_generate entry;
    `ignored` inputs have no effect on the result; `values` renames literal values per Easel
    input; `adapt` sees the renamed inputs and handles what a rename cannot.
    """

    easel_type: str
    inputs: Mapping[str, str]
    outputs: tuple[str | None, ...]
    widgets: tuple[str, ...] = ()
    seeded: frozenset[str] = frozenset()
    ignored: frozenset[str] = frozenset()
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    strict_values: frozenset[str] = frozenset()  # inputs whose unknown values are refused
    adapt: Adapter | None = None


def _ksampler_advanced(inputs: dict[str, Any]) -> Adapted:
    """KSamplerAdvanced is KSampler when it samples the whole schedule, a no-op when it starts
    at or after its end; a partial range (split sampling) has no exact Easel equivalent."""
    add_noise = inputs.pop("add_noise", "enable")
    start = inputs.pop("start_at_step", 0)
    end = inputs.pop("end_at_step", 10000)
    inputs.pop("return_with_leftover_noise", None)
    steps = inputs.get("steps")
    if not all(isinstance(v, int | float) and not isinstance(v, bool)
               for v in (start, end, steps)):
        return Adapted(inputs, [(None, "start_at_step, end_at_step and steps must be literal "
                                       "numbers for the conversion")])
    last = min(end, steps)
    if start >= last:
        # ComfyUI returns the input latent unchanged when there is nothing to sample.
        return Adapted(inputs, passthrough="latent")
    problems: list[tuple[str | None, str]] = []
    if start > 0 or end < steps:
        problems.append(("start_at_step", f"sampling only steps {start} to {last} of {steps} "
                         "(split sampling) has no exact Easel equivalent; use a KSampler "
                         "with denoise"))
    elif add_noise != "enable":
        problems.append(("add_noise", "sampling the whole schedule without adding noise has "
                         "no Easel equivalent"))
    inputs["denoise"] = 1.0
    return Adapted(inputs, problems)


def _resize_to_size(inputs: dict[str, Any]) -> Adapted:
    """ComfyUI's resize to width x height: 0 keeps the aspect ratio from the other side, and
    both 0 keep the size, which in Easel is scale 1 (Easel scales when no size is given)."""
    inputs["scale"] = 1.0
    crop = inputs.pop("crop", "disabled")
    if crop != "disabled":
        return Adapted(inputs, [("crop", f"crop={crop!r} has no Easel equivalent "
                                         "(only 'disabled' converts)")])
    return Adapted(inputs)


_SAMPLER_INPUTS = {"model": "model", "positive": "positive", "negative": "negative",
                   "latent_image": "latent", "steps": "steps", "cfg": "cfg",
                   "sampler_name": "sampler_name", "scheduler": "scheduler"}

NODE_MAPS: dict[str, NodeMap] = {
    "CheckpointLoaderSimple": NodeMap(
        "CheckpointLoader", {"ckpt_name": "name"}, ("model", "clip", "vae"),
        widgets=("ckpt_name",)),
    "CLIPTextEncode": NodeMap(
        "TextEncode", {"clip": "clip", "text": "text"}, ("conditioning",), widgets=("text",)),
    "EmptyLatentImage": NodeMap(
        "EmptyLatent", {"width": "width", "height": "height", "batch_size": "batch_size"},
        ("latent",), widgets=("width", "height", "batch_size")),
    "KSampler": NodeMap(
        "KSampler", {**_SAMPLER_INPUTS, "seed": "seed", "denoise": "denoise"}, ("latent",),
        widgets=("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
        seeded=frozenset({"seed"}), values={"sampler_name": SAMPLER_NAMES}),
    "KSamplerAdvanced": NodeMap(
        "KSampler", {**_SAMPLER_INPUTS, "noise_seed": "seed", "add_noise": "add_noise",
                     "start_at_step": "start_at_step", "end_at_step": "end_at_step",
                     "return_with_leftover_noise": "return_with_leftover_noise"},
        ("latent",),
        widgets=("add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler",
                 "start_at_step", "end_at_step", "return_with_leftover_noise"),
        seeded=frozenset({"noise_seed"}), values={"sampler_name": SAMPLER_NAMES},
        adapt=_ksampler_advanced),
    "VAEDecode": NodeMap("VAEDecode", {"samples": "latent", "vae": "vae"}, ("image",)),
    "VAEEncode": NodeMap("VAEEncode", {"pixels": "image", "vae": "vae"}, ("latent",)),
    "LoadImage": NodeMap(
        "LoadImage", {"image": "image"}, ("image", None), widgets=("image", "upload"),
        ignored=frozenset({"upload"})),
    "SaveImage": NodeMap(
        "SaveImage", {"images": "image", "filename_prefix": "filename_prefix"}, (),
        widgets=("filename_prefix",)),
    "PreviewImage": NodeMap("PreviewImage", {"images": "image"}, ()),
    "LatentUpscale": NodeMap(
        "LatentUpscale", {"samples": "latent", "upscale_method": "method", "width": "width",
                          "height": "height", "crop": "crop"},
        ("latent",), widgets=("upscale_method", "width", "height", "crop"),
        values={"method": LATENT_METHODS}, strict_values=frozenset({"method"}),
        adapt=_resize_to_size),
    "LatentUpscaleBy": NodeMap(
        "LatentUpscale", {"samples": "latent", "upscale_method": "method", "scale_by": "scale"},
        ("latent",), widgets=("upscale_method", "scale_by"),
        values={"method": LATENT_METHODS}, strict_values=frozenset({"method"})),
    "ImageScale": NodeMap(
        "Upscale", {"image": "image", "upscale_method": "method", "width": "width",
                    "height": "height", "crop": "crop"},
        ("image",), widgets=("upscale_method", "width", "height", "crop"),
        values={"method": UPSCALE_METHODS}, strict_values=frozenset({"method"}),
        adapt=_resize_to_size),
    "ImageScaleBy": NodeMap(
        "Upscale", {"image": "image", "upscale_method": "method", "scale_by": "scale"},
        ("image",), widgets=("upscale_method", "scale_by"),
        values={"method": UPSCALE_METHODS}, strict_values=frozenset({"method"})),
    "ConditioningZeroOut": NodeMap(
        "ConditioningZeroOut", {"conditioning": "conditioning"}, ("conditioning",)),
    "PrimitiveInt": NodeMap("Int", {"value": "value"}, ("value",), widgets=("value",),
                            seeded=frozenset({"value"})),
    "PrimitiveFloat": NodeMap("Float", {"value": "value"}, ("value",), widgets=("value",)),
    "PrimitiveString": NodeMap("String", {"value": "value"}, ("value",), widgets=("value",)),
    "PrimitiveStringMultiline": NodeMap("String", {"value": "value"}, ("value",),
                                        widgets=("value",)),
}

# Editor-only ComfyUI node types: they never run (the UI format resolves them away).
NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
