"""The table that maps ComfyUI node types onto Easel node types (data, one entry per type)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# What ComfyUI's frontend stores after a seed widget; never an input of the backend.
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})

# ComfyUI's "*_gpu" samplers are the same algorithm with noise drawn on the GPU.
SAMPLER_NAMES = {
    "dpmpp_2m_sde_gpu": "dpmpp_2m_sde",
    "dpmpp_3m_sde_gpu": "dpmpp_3m_sde",
    "dpmpp_sde_gpu": "dpmpp_sde",
}
# Pixel upscaling (Upscale) names nearest-neighbour "nearest"; LatentUpscale keeps ComfyUI's.
UPSCALE_METHODS = {
    "nearest-exact": "nearest",
    "bilinear": "bilinear",
    "area": "area",
    "bicubic": "bicubic",
    "lanczos": "lanczos",
}
LATENT_METHODS = {name: name for name in ("nearest-exact", "bilinear", "area", "bicubic")}
# ComfyUI's on/off combo widgets ("enable"/"disable") are Easel booleans.
SWITCH = {"enable": True, "disable": False}
# VAEDecodeTiled / VAEEncodeTiled's widgets, in ComfyUI's order.
TILED_WIDGETS = ("tile_size", "overlap", "temporal_size", "temporal_overlap")
# The prediction types Easel's samplers implement (ComfyUI also has lcm, x0, img_to_img).
PREDICTIONS = {"eps": "eps", "v_prediction": "v_prediction"}


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
    `ignored` inputs have no effect on the result; `optional` inputs may be left unconnected
    (a node that loses a required input to a muted node is dropped, one that loses an optional
    input is kept); `values` renames literal values per Easel input; `adapt` sees the renamed
    inputs and handles what a rename cannot.
    """

    easel_type: str
    inputs: Mapping[str, str]
    outputs: tuple[str | None, ...]
    widgets: tuple[str, ...] = ()
    seeded: frozenset[str] = frozenset()
    ignored: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    strict_values: frozenset[str] = frozenset()  # inputs whose unknown values are refused
    adapt: Adapter | None = None
    output_node: bool = False  # an output node that also passes its input on (SaveImage)
    # Easel inputs typed "*" (any), which take only links: a literal ComfyUI gives one (a
    # subgraph's promoted widget) arrives through a constant node (Int, Float, String, Boolean).
    any_inputs: frozenset[str] = frozenset()

    @property
    def is_output(self) -> bool:
        """Whether the node is an output node (what a workflow runs for)."""
        return self.output_node or not self.outputs


def _ksampler_advanced(inputs: dict[str, Any]) -> Adapted:
    """KSamplerAdvanced converts one to one, except when it samples nothing (it starts at or
    after its last step): ComfyUI then returns its input latent unchanged, so the node
    passes that latent on (the refiner pass of ComfyUI's own SDXL test graph does this)."""
    start = inputs.get("start_at_step", 0)
    end = inputs.get("end_at_step", 10000)
    steps = inputs.get("steps", 20)
    literal = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, steps))
    if literal and start >= min(end, steps):
        return Adapted(inputs, passthrough="latent")
    return Adapted(inputs)


def _inpaint_conditioning(inputs: dict[str, Any]) -> Adapted:
    """Files saved before ComfyUI added `noise_mask` always set the latent's noise mask."""
    inputs.setdefault("noise_mask", True)
    return Adapted(inputs)


def _resize_to_size(inputs: dict[str, Any]) -> Adapted:
    """ComfyUI's resize to width x height: 0 keeps the aspect ratio from the other side, and
    both 0 keep the size, which in Easel is scale 1 (Easel scales when no size is given)."""
    inputs["scale"] = 1.0
    crop = inputs.pop("crop", "disabled")
    if crop != "disabled":
        return Adapted(
            inputs, [("crop", f"crop={crop!r} has no Easel equivalent (only 'disabled' converts)")]
        )
    return Adapted(inputs)


def _image_scale(inputs: dict[str, Any]) -> Adapted:
    """ImageScale: as _resize_to_size, and crop "center" is Upscale's own."""
    if inputs.get("crop") == "center":
        inputs["scale"] = 1.0
        return Adapted(inputs)
    return _resize_to_size(inputs)


# ResizeImageMaskNode's `resize_type` is a dynamic combo: which widgets follow it in the UI
# format (and which "resize_type.<name>" inputs the API format has) depends on its value.
RESIZE_WIDGETS: dict[str, tuple[str, ...]] = {
    "scale dimensions": ("width", "height", "crop"),
    "scale by multiplier": ("multiplier",),
    "scale longer dimension": ("longer_size",),
    "scale shorter dimension": ("shorter_size",),
    "scale width": ("width",),
    "scale height": ("height",),
    "scale total pixels": ("megapixels",),
    "match size": ("crop",),
    "scale to multiple": ("multiple",),
}
_RESIZE_POSITIONS = ("resize_widget_1", "resize_widget_2", "resize_widget_3", "resize_widget_4")


def _resize_image_mask(inputs: dict[str, Any]) -> Adapted:
    """Name the UI format's positional widgets after the chosen resize type's widgets (the
    last one is scale_method); named (API) inputs and linked widgets win."""
    kind = inputs.get("resize_type", "scale dimensions")
    positional = [inputs.pop(name) for name in _RESIZE_POSITIONS if name in inputs]
    if isinstance(kind, str) and kind not in RESIZE_WIDGETS:
        return Adapted(
            inputs, [("resize_type", f"{kind!r} is not a resize type of ResizeImageMaskNode")]
        )
    names = RESIZE_WIDGETS.get(kind, ()) if isinstance(kind, str) else ()
    for name, value in zip((*names, "scale_method"), positional, strict=False):
        inputs.setdefault(name, value)
    method = inputs.get("scale_method")
    if isinstance(method, str):
        if method not in UPSCALE_METHODS:
            return Adapted(
                inputs,
                [
                    (
                        "scale_method",
                        f"{method!r} has no Easel equivalent "
                        f"(convertible: "
                        f"{', '.join(sorted(UPSCALE_METHODS))})",
                    )
                ],
            )
        inputs["scale_method"] = UPSCALE_METHODS[method]
    return Adapted(inputs)


# TextGenerate's `sampling_mode` is a dynamic combo: "on" is followed by its sampling widgets,
# "off" by none; thinking, use_default_template and mtp come after (older files stop sooner).
TEXTGEN_SAMPLING = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "seed",
    "presence_penalty",
)
_TEXTGEN_TAIL = ("thinking", "use_default_template", "mtp")
_TEXTGEN_POSITIONS = tuple(f"textgen_widget_{i}" for i in range(1, 11))


def _bounding_boxes(inputs: dict[str, Any]) -> Adapted:
    """CreateBoundingBoxes' editor boxes (a list in the UI format, spelled {"value": [...]} as
    an Easel literal) as Easel's JSON text."""
    import json

    boxes = inputs.get("boxes")
    if isinstance(boxes, dict) and set(boxes) == {"value"}:
        boxes = boxes["value"]
    if isinstance(boxes, list):
        inputs["boxes"] = json.dumps(boxes)
    return Adapted(inputs)


def _text_generate(inputs: dict[str, Any]) -> Adapted:
    """Name the UI format's positional widgets after the sampling mode's; `mtp` (speculative
    decoding with a multi-token-prediction head) changes speed, not what the model answers,
    and Easel has none: it is dropped."""
    mode = inputs.get("sampling_mode", "on")
    positional = [inputs.pop(name) for name in _TEXTGEN_POSITIONS if name in inputs]
    if isinstance(mode, str) and mode not in ("on", "off"):
        return Adapted(inputs, [("sampling_mode", f"{mode!r} is not 'on' or 'off'")])
    names = iter((*TEXTGEN_SAMPLING, *_TEXTGEN_TAIL) if mode == "on" else _TEXTGEN_TAIL)
    previous = None
    for value in positional:
        if previous == "seed" and isinstance(value, str) and value in CONTROL_VALUES:
            continue  # control_after_generate
        previous = next(names, None)
        if previous is not None:
            inputs.setdefault(previous, value)
    inputs.pop("mtp", None)
    return Adapted(inputs)


_SAVE_POSITIONS = ("save_widget_1", "save_widget_2")


def _save_image_advanced(inputs: dict[str, Any]) -> Adapted:
    """SaveImageAdvanced as PNG, 8 bits, sRGB is SaveImage; other formats are refused."""
    positional = [inputs.pop(name) for name in _SAVE_POSITIONS if name in inputs]
    for name, value in zip(("bit_depth", "input_color_space"), positional, strict=False):
        inputs.setdefault(name, value)
    wanted = {"format": "png", "bit_depth": "8-bit", "input_color_space": "sRGB"}
    problems: list[tuple[str | None, str]] = [
        (
            name,
            f"{name}={inputs[name]!r} has no Easel equivalent (Easel saves "
            "8-bit sRGB PNG files: format 'png', bit_depth '8-bit')",
        )
        for name, value in wanted.items()
        if isinstance(inputs.get(name), str) and inputs[name] != value
    ]
    for name in wanted:
        inputs.pop(name, None)
    return Adapted(inputs, problems)


# ModelSamplingAuraFlow's sampling kinds Easel has (easel.models.marigold_sampling.KINDS)
_SAMPLING_KINDS = ("flow", "img_to_img_velocity")


def _aura_flow_sampling(inputs: dict[str, Any]) -> Adapted:
    """ModelSamplingAuraFlow's `sampling` (newer ComfyUI): "flow" is the flow matching every
    flow model in Easel samples with, so it converts to nothing; "img_to_img_velocity"
    (Marigold v2's) is Easel's input of that name; any other has no Easel equivalent."""
    sampling = inputs.pop("sampling", "flow")
    if sampling == "flow":
        return Adapted(inputs)
    if sampling in _SAMPLING_KINDS:
        return Adapted({**inputs, "sampling": sampling})
    shown = repr(sampling) if isinstance(sampling, str) else "a linked value"
    return Adapted(
        inputs,
        [
            (
                "sampling",
                f"sampling={shown} has no Easel equivalent (Easel samples "
                f"{', '.join(repr(k) for k in _SAMPLING_KINDS)})",
            )
        ],
    )


def _scale_to_max_dimension(inputs: dict[str, Any]) -> Adapted:
    """ImageScaleToMaxDimension is ResizeImageMask scaling the longer side."""
    inputs["resize_type"] = "scale longer dimension"
    return _resize_image_mask(inputs)


_SAMPLER_INPUTS = {
    "model": "model",
    "positive": "positive",
    "negative": "negative",
    "latent_image": "latent",
    "steps": "steps",
    "cfg": "cfg",
    "sampler_name": "sampler_name",
    "scheduler": "scheduler",
}

NODE_MAPS: dict[str, NodeMap] = {
    "CheckpointLoaderSimple": NodeMap(
        "CheckpointLoader", {"ckpt_name": "name"}, ("model", "clip", "vae"), widgets=("ckpt_name",)
    ),
    # ComfyUI's deprecated loader: the family registry finds the config, config_name is moot.
    "CheckpointLoader": NodeMap(
        "CheckpointLoader",
        {"config_name": "config_name", "ckpt_name": "name"},
        ("model", "clip", "vae"),
        widgets=("config_name", "ckpt_name"),
        ignored=frozenset({"config_name"}),
    ),
    "VAELoader": NodeMap("VAELoader", {"vae_name": "name"}, ("vae",), widgets=("vae_name",)),
    "LoraLoader": NodeMap(
        "LoraLoader",
        {
            "model": "model",
            "clip": "clip",
            "lora_name": "name",
            "strength_model": "strength_model",
            "strength_clip": "strength_clip",
        },
        ("model", "clip"),
        widgets=("lora_name", "strength_model", "strength_clip"),
    ),
    "LoraLoaderModelOnly": NodeMap(
        "LoraLoaderModelOnly",
        {"model": "model", "lora_name": "name", "strength_model": "strength_model"},
        ("model",),
        widgets=("lora_name", "strength_model"),
    ),
    "CLIPSetLastLayer": NodeMap(
        "CLIPSetLastLayer",
        {"clip": "clip", "stop_at_clip_layer": "stop_at_clip_layer"},
        ("clip",),
        widgets=("stop_at_clip_layer",),
    ),
    "ControlNetLoader": NodeMap(
        "ControlNetLoader",
        {"control_net_name": "name"},
        ("control_net",),
        widgets=("control_net_name",),
    ),
    "ControlNetApply": NodeMap(
        "ControlNetApply",
        {
            "conditioning": "conditioning",
            "control_net": "control_net",
            "image": "image",
            "strength": "strength",
        },
        ("conditioning",),
        widgets=("strength",),
    ),
    "ControlNetApplyAdvanced": NodeMap(
        "ControlNetApplyAdvanced",
        {
            "positive": "positive",
            "negative": "negative",
            "control_net": "control_net",
            "image": "image",
            "strength": "strength",
            "start_percent": "start_percent",
            "end_percent": "end_percent",
            "vae": "vae",
        },
        ("positive", "negative"),
        widgets=("strength", "start_percent", "end_percent"),
        optional=frozenset({"vae"}),
    ),
    "ModelPatchLoader": NodeMap(
        "ModelPatchLoader", {"name": "name"}, ("model_patch",), widgets=("name",)
    ),
    "QwenImageDiffsynthControlnet": NodeMap(
        "QwenImageDiffsynthControlnet",
        {name: name for name in ("model", "model_patch", "vae", "image", "strength", "mask")},
        ("model",),
        widgets=("strength",),
        optional=frozenset({"mask"}),
    ),
    "AnimaLLLiteApply": NodeMap(
        "AnimaLLLiteApply",
        {
            name: name
            for name in (
                "model",
                "model_patch",
                "image",
                "mask",
                "strength",
                "start_percent",
                "end_percent",
            )
        },
        ("model",),
        widgets=("strength", "start_percent", "end_percent"),
        optional=frozenset({"mask"}),
    ),
    "Painter": NodeMap(
        "Painter",
        {name: name for name in ("image", "mask", "width", "height", "bg_color")},
        ("image", "mask"),
        widgets=("mask", "width", "height", "bg_color"),
        optional=frozenset({"image"}),
    ),
    "UpscaleModelLoader": NodeMap(
        "UpscaleModelLoader", {"model_name": "name"}, ("upscale_model",), widgets=("model_name",)
    ),
    "ImageUpscaleWithModel": NodeMap(
        "ImageUpscaleWithModel", {"upscale_model": "upscale_model", "image": "image"}, ("image",)
    ),
    # CLIP vision and style models (easel/nodes/clip_vision.py, style_model.py): SDXL revision
    # and Flux Redux.
    "CLIPVisionLoader": NodeMap(
        "CLIPVisionLoader", {"clip_name": "name"}, ("clip_vision",), widgets=("clip_name",)
    ),
    "CLIPVisionEncode": NodeMap(
        "CLIPVisionEncode",
        {"clip_vision": "clip_vision", "image": "image", "crop": "crop"},
        ("clip_vision_output",),
        widgets=("crop",),
    ),
    "unCLIPConditioning": NodeMap(
        "unCLIPConditioning",
        {
            "conditioning": "conditioning",
            "clip_vision_output": "clip_vision_output",
            "strength": "strength",
            "noise_augmentation": "noise_augmentation",
        },
        ("conditioning",),
        widgets=("strength", "noise_augmentation"),
    ),
    "StyleModelLoader": NodeMap(
        "StyleModelLoader",
        {"style_model_name": "name"},
        ("style_model",),
        widgets=("style_model_name",),
    ),
    "StyleModelApply": NodeMap(
        "StyleModelApply",
        {
            "conditioning": "conditioning",
            "style_model": "style_model",
            "clip_vision_output": "clip_vision_output",
            "strength": "strength",
            "strength_type": "strength_type",
        },
        ("conditioning",),
        widgets=("strength", "strength_type"),
    ),
    "ModelSamplingDiscrete": NodeMap(
        "ModelSamplingDiscrete",
        {"model": "model", "sampling": "sampling", "zsnr": "zsnr"},
        ("model",),
        widgets=("sampling", "zsnr"),
        values={"sampling": PREDICTIONS},
        strict_values=frozenset({"sampling"}),
    ),
    # Flux and ComfyUI's split model files (easel/nodes/loaders_split.py, flux.py). ComfyUI's
    # CLIPLoader is Easel's TextEncoderLoader (Easel's CLIPLoader loads CLIPScore models).
    # Custom sampling (easel/nodes/custom_sampling.py): the same node names and inputs.
    "KSamplerSelect": NodeMap(
        "KSamplerSelect",
        {"sampler_name": "sampler_name"},
        ("sampler",),
        widgets=("sampler_name",),
        values={"sampler_name": SAMPLER_NAMES},
    ),
    "BasicScheduler": NodeMap(
        "BasicScheduler",
        {name: name for name in ("model", "scheduler", "steps", "denoise")},
        ("sigmas",),
        widgets=("scheduler", "steps", "denoise"),
    ),
    "ManualSigmas": NodeMap("ManualSigmas", {"sigmas": "sigmas"}, ("sigmas",), widgets=("sigmas",)),
    "SplitSigmas": NodeMap(
        "SplitSigmas",
        {"sigmas": "sigmas", "step": "step"},
        ("high_sigmas", "low_sigmas"),
        widgets=("step",),
    ),
    "SplitSigmasDenoise": NodeMap(
        "SplitSigmasDenoise",
        {"sigmas": "sigmas", "denoise": "denoise"},
        ("high_sigmas", "low_sigmas"),
        widgets=("denoise",),
    ),
    "RandomNoise": NodeMap(
        "RandomNoise",
        {"noise_seed": "noise_seed"},
        ("noise",),
        widgets=("noise_seed",),
        seeded=frozenset({"noise_seed"}),
    ),
    "DisableNoise": NodeMap("DisableNoise", {}, ("noise",)),
    "SDTurboScheduler": NodeMap(
        "SDTurboScheduler",
        {name: name for name in ("model", "steps", "denoise")},
        ("sigmas",),
        widgets=("steps", "denoise"),
    ),
    "LotusConditioning": NodeMap("LotusConditioning", {}, ("conditioning",)),
    "CFGGuider": NodeMap(
        "CFGGuider",
        {name: name for name in ("model", "positive", "negative", "cfg")},
        ("guider",),
        widgets=("cfg",),
    ),
    "BasicGuider": NodeMap(
        "BasicGuider", {"model": "model", "conditioning": "conditioning"}, ("guider",)
    ),
    "DualCFGGuider": NodeMap(
        "DualCFGGuider",
        {
            name: name
            for name in (
                "model",
                "cond1",
                "cond2",
                "negative",
                "cfg_conds",
                "cfg_cond2_negative",
                "style",
            )
        },
        ("guider",),
        widgets=("cfg_conds", "cfg_cond2_negative", "style"),
    ),
    "CFGNorm": NodeMap(
        "CFGNorm", {"model": "model", "strength": "strength"}, ("model",), widgets=("strength",)
    ),
    # Skip Layer Guidance (easel/nodes/skip_layer_guidance.py): the same names and inputs.
    **{
        name: NodeMap(name, {w: w for w in ("model", *widgets)}, ("model",), widgets=widgets)
        for name, widgets in (
            (
                "SkipLayerGuidanceDiT",
                (
                    "double_layers",
                    "single_layers",
                    "scale",
                    "start_percent",
                    "end_percent",
                    "rescaling_scale",
                ),
            ),
            (
                "SkipLayerGuidanceDiTSimple",
                ("double_layers", "single_layers", "start_percent", "end_percent"),
            ),
            ("SkipLayerGuidanceSD3", ("layers", "scale", "start_percent", "end_percent")),
        )
    },
    "SamplerCustomAdvanced": NodeMap(
        "SamplerCustomAdvanced",
        {name: name for name in ("noise", "guider", "sampler", "sigmas", "latent_image")},
        ("output", "denoised_output"),
    ),
    "SamplerCustom": NodeMap(
        "SamplerCustom",
        {
            name: name
            for name in (
                "model",
                "add_noise",
                "noise_seed",
                "cfg",
                "positive",
                "negative",
                "sampler",
                "sigmas",
                "latent_image",
            )
        },
        ("output", "denoised_output"),
        widgets=("add_noise", "noise_seed", "cfg"),
        seeded=frozenset({"noise_seed"}),
    ),
    "UNETLoader": NodeMap(
        "DiffusionModelLoader",
        {"unet_name": "name", "weight_dtype": "weight_dtype"},
        ("model",),
        widgets=("unet_name", "weight_dtype"),
    ),
    "CLIPLoader": NodeMap(
        "TextEncoderLoader",
        {"clip_name": "name", "type": "type", "device": "device"},
        ("clip",),
        widgets=("clip_name", "type", "device"),
        ignored=frozenset({"device"}),
        values={
            "type": {
                "stable_diffusion": "stable_diffusion",
                "flux2": "flux2",
                "qwen_image": "qwen_image",
                "longcat_image": "longcat_image",
                "ovis": "ovis",
                "lumina2": "lumina2",
                "sd3": "sd3",
                "chroma": "chroma",
                "krea2": "krea2",
                "joyimage": "joyimage",
                "ideogram4": "ideogram4",
                "flux3": "flux3",
                "fibo2": "fibo2",
                "omnigen2": "omnigen2",
                "boogu": "boogu",
                "minimax": "minimax",
                "mage": "mage",
                "wan": "wan",
            }
        },
        strict_values=frozenset({"type"}),
    ),
    "DualCLIPLoader": NodeMap(
        "DualTextEncoderLoader",
        {"clip_name1": "name1", "clip_name2": "name2", "type": "type", "device": "device"},
        ("clip",),
        widgets=("clip_name1", "clip_name2", "type", "device"),
        ignored=frozenset({"device"}),
        values={
            "type": {
                "flux": "flux",
                "sd3": "sd3",
                "kandinsky5_image": "kandinsky5_image",
                "hunyuan_video_15": "hunyuan_video_15",
            }
        },
        strict_values=frozenset({"type"}),
    ),
    # ComfyUI's TripleCLIPLoader has no type: it loads SD3's clip_l, clip_g and t5xxl
    "TripleCLIPLoader": NodeMap(
        "TripleTextEncoderLoader",
        {"clip_name1": "name1", "clip_name2": "name2", "clip_name3": "name3"},
        ("clip",),
        widgets=("clip_name1", "clip_name2", "clip_name3"),
        adapt=lambda inputs: Adapted({**inputs, "type": "sd3"}),
    ),
    # ComfyUI's QuadrupleCLIPLoader has no type: it loads HiDream's clip_l, clip_g, t5xxl, llama
    "QuadrupleCLIPLoader": NodeMap(
        "QuadrupleTextEncoderLoader",
        {f"clip_name{i}": f"name{i}" for i in range(1, 5)},
        ("clip",),
        widgets=tuple(f"clip_name{i}" for i in range(1, 5)),
        adapt=lambda inputs: Adapted({**inputs, "type": "hidream"}),
    ),
    "CLIPTextEncodeHiDream": NodeMap(
        "TextEncodeHiDream",
        {name: name for name in ("clip", "clip_l", "clip_g", "t5xxl", "llama")},
        ("conditioning",),
        widgets=("clip_l", "clip_g", "t5xxl", "llama"),
    ),
    "T5TokenizerOptions": NodeMap(
        "T5TokenizerOptions",
        {"clip": "clip", "min_padding": "min_padding", "min_length": "min_length"},
        ("clip",),
        widgets=("min_padding", "min_length"),
    ),
    "CLIPTextEncodeSD3": NodeMap(
        "TextEncodeSD3",
        {name: name for name in ("clip", "clip_l", "clip_g", "t5xxl", "empty_padding")},
        ("conditioning",),
        widgets=("clip_l", "clip_g", "t5xxl", "empty_padding"),
        values={"empty_padding": {"none": "none", "empty_prompt": "empty_prompt"}},
        strict_values=frozenset({"empty_padding"}),
    ),
    "CLIPTextEncodeFlux": NodeMap(
        "TextEncodeFlux",
        {name: name for name in ("clip", "clip_l", "t5xxl", "guidance")},
        ("conditioning",),
        widgets=("clip_l", "t5xxl", "guidance"),
    ),
    "FluxGuidance": NodeMap(
        "FluxGuidance",
        {"conditioning": "conditioning", "guidance": "guidance"},
        ("conditioning",),
        widgets=("guidance",),
    ),
    "TextEncodeQwenImageEdit": NodeMap(
        "TextEncodeQwenImageEdit",
        {name: name for name in ("clip", "prompt", "vae", "image")},
        ("conditioning",),
        widgets=("prompt",),
        optional=frozenset({"vae", "image"}),
    ),
    # Wan 2.1 / ChronoEdit (easel/nodes/wan.py)
    "WanImageToVideo": NodeMap(
        "WanImageToVideo",
        {
            name: name
            for name in (
                "positive",
                "negative",
                "vae",
                "width",
                "height",
                "length",
                "batch_size",
                "clip_vision_output",
                "start_image",
            )
        },
        ("positive", "negative", "latent"),
        widgets=("width", "height", "length", "batch_size"),
        optional=frozenset({"clip_vision_output", "start_image"}),
    ),
    "ScaleROPE": NodeMap(
        "ScaleROPE",
        {
            name: name
            for name in ("model", "scale_x", "shift_x", "scale_y", "shift_y", "scale_t", "shift_t")
        },
        ("model",),
        widgets=("scale_x", "shift_x", "scale_y", "shift_y", "scale_t", "shift_t"),
    ),
    # JoyImage Edit (easel/nodes/joyimage.py): its reference images are the "images" group
    "TextEncodeJoyImageEdit": NodeMap(
        "TextEncodeJoyImageEdit",
        {
            **{name: name for name in ("clip", "prompt", "vae")},
            **{f"images.image{i}": f"image{i}" for i in range(6)},
        },
        ("conditioning",),
        widgets=("prompt",),
        optional=frozenset({"vae", *(f"images.image{i}" for i in range(6))}),
    ),
    "TextEncodeQwenImageEditPlus": NodeMap(
        "TextEncodeQwenImageEditPlus",
        {name: name for name in ("clip", "prompt", "vae", "image1", "image2", "image3")},
        ("conditioning",),
        widgets=("prompt",),
        optional=frozenset({"vae", "image1", "image2", "image3"}),
    ),
    # Qwen-Image 2.1 (easel/nodes/qwen_image21.py): its reference images are the "images" group
    "TextEncodeQwenImage21": NodeMap(
        "TextEncodeQwenImage21",
        {
            **{name: name for name in ("clip", "prompt", "negative_prompt", "vae", "resolution")},
            **{f"images.image_{i}": f"image_{i}" for i in range(1, 17)},
        },
        ("positive", "negative", "latent"),
        widgets=("prompt", "negative_prompt", "resolution"),
        optional=frozenset({"vae", *(f"image_{i}" for i in range(1, 17))}),
    ),
    # Fibo 2.0 (easel/nodes/fibo2.py): its prompts, images to edit and result size.
    "TextEncodeFibo2": NodeMap(
        "TextEncodeFibo2",
        {
            **{name: name for name in ("clip", "prompt", "negative_prompt", "vae")},
            **{name: name for name in ("width", "height", "batch_size")},
            **{f"images.image_{i}": f"image_{i}" for i in range(1, 5)},
        },
        ("positive", "negative", "latent"),
        widgets=("prompt", "negative_prompt", "width", "height", "batch_size"),
        optional=frozenset({"vae", *(f"image_{i}" for i in range(1, 5))}),
    ),
    # Mage-Flow (easel/nodes/mage_flow.py): its prompts, images to edit and result size.
    "TextEncodeMageFlowEdit": NodeMap(
        "TextEncodeMageFlowEdit",
        {
            **{name: name for name in ("clip", "prompt", "negative_prompt", "vae")},
            **{name: name for name in ("width", "height", "batch_size")},
            **{f"images.image_{i}": f"image_{i}" for i in range(1, 17)},
        },
        ("positive", "negative", "latent"),
        widgets=("prompt", "negative_prompt", "width", "height", "batch_size"),
        optional=frozenset({"vae", *(f"image_{i}" for i in range(1, 17))}),
    ),
    # Boogu-Image (easel/nodes/boogu.py): its prompts; the images to edit are the "images" group
    "TextEncodeBooguEdit": NodeMap(
        "TextEncodeBooguEdit",
        {
            **{name: name for name in ("clip", "prompt", "negative_prompt", "vae")},
            **{f"images.image_{i}": f"image_{i}" for i in range(1, 17)},
        },
        ("positive", "negative"),
        widgets=("prompt", "negative_prompt"),
        optional=frozenset({"vae", *(f"image_{i}" for i in range(1, 17))}),
    ),
    "QwenImage21Cache": NodeMap(
        "QwenImage21Cache",
        {"model": "model", "device": "device", "dtype": "dtype"},
        ("model",),
        widgets=("device", "dtype"),
    ),
    "ReferenceLatent": NodeMap(
        "ReferenceLatent",
        {"conditioning": "conditioning", "latent": "latent"},
        ("conditioning",),
        optional=frozenset({"latent"}),
    ),
    # Flux 3 (easel/nodes/flux3.py): references for an edit; the layout caption of boxes.
    "ReferenceMultiLatent": NodeMap(
        "ReferenceMultiLatent",
        {
            "positive": "positive",
            "negative": "negative",
            "vae": "vae",
            **{f"images.image{i}": f"image{i}" for i in range(10)},
            "resolution": "resolution",
            "resolution.megapixels": "megapixels",
        },
        ("positive", "negative", "empty_latent"),
        widgets=("resolution", "resolution.megapixels"),
        optional=frozenset(f"image{i}" for i in range(10)),
        values={"resolution": {"resize": "resize"}},
        strict_values=frozenset({"resolution"}),
    ),
    "Flux3LayoutPrompt": NodeMap(
        "Flux3LayoutPrompt",
        {"prompt": "text", "element": "element"},
        ("prompt",),
        widgets=("prompt",),
        optional=frozenset({"element"}),
    ),
    # CreateBoundingBoxes (easel/nodes/bounding_boxes.py): the editor's boxes as JSON text;
    # `last_incoming` is the editor's copy of the linked boxes (UI state).
    "CreateBoundingBoxes": NodeMap(
        "CreateBoundingBoxes",
        {
            "width": "width",
            "height": "height",
            "editor_state": "boxes",
            "last_incoming": "last_incoming",
            "background": "background",
            "bboxes": "bboxes",
        },
        ("preview", "bboxes", "elements"),
        widgets=("width", "height", "editor_state", "last_incoming"),
        ignored=frozenset({"last_incoming"}),
        optional=frozenset({"background", "bboxes"}),
        adapt=_bounding_boxes,
    ),
    # Flux.2 (easel/nodes/flux2.py): its latents are 128 channels at 1/16, as ComfyUI's.
    # HunyuanVideo 1.5 / Capybara (easel/nodes/hunyuan15.py): one frame
    "EmptyHunyuanVideo15Latent": NodeMap(
        "EmptyHunyuanVideo15Latent",
        {name: name for name in ("width", "height", "length", "batch_size")},
        ("latent",),
        widgets=("width", "height", "length", "batch_size"),
    ),
    "HunyuanVideo15ImageToVideo": NodeMap(
        "HunyuanVideo15ImageToVideo",
        {
            name: name
            for name in (
                "positive",
                "negative",
                "vae",
                "width",
                "height",
                "length",
                "batch_size",
                "start_image",
                "clip_vision_output",
            )
        },
        ("positive", "negative", "latent"),
        widgets=("width", "height", "length", "batch_size"),
        optional=frozenset({"start_image", "clip_vision_output"}),
    ),
    "EmptyFlux2LatentImage": NodeMap(
        "EmptyFlux2LatentImage",
        {"width": "width", "height": "height", "batch_size": "batch_size"},
        ("latent",),
        widgets=("width", "height", "batch_size"),
    ),
    "Flux2Scheduler": NodeMap(
        "Flux2Scheduler",
        {"steps": "steps", "width": "width", "height": "height"},
        ("sigmas",),
        widgets=("steps", "width", "height"),
    ),
    "FluxKVCache": NodeMap("FluxKVCache", {"model": "model"}, ("model",)),
    # Ideogram 4 (easel/nodes/ideogram4.py): its schedule, its two-model guider, CFGOverride.
    "Ideogram4Scheduler": NodeMap(
        "Ideogram4Scheduler",
        {name: name for name in ("steps", "width", "height", "mu", "std")},
        ("sigmas",),
        widgets=("steps", "width", "height", "mu", "std"),
    ),
    "DualModelGuider": NodeMap(
        "DualModelGuider",
        {name: name for name in ("model", "positive", "cfg", "model_negative", "negative")},
        ("guider",),
        widgets=("cfg",),
    ),
    "CFGOverride": NodeMap(
        "CFGOverride",
        {name: name for name in ("model", "cfg", "start_percent", "end_percent")},
        ("model",),
        widgets=("cfg", "start_percent", "end_percent"),
    ),
    "FluxKontextMultiReferenceLatentMethod": NodeMap(
        "FluxKontextMultiReferenceLatentMethod",
        {"conditioning": "conditioning", "reference_latents_method": "reference_latents_method"},
        ("conditioning",),
        widgets=("reference_latents_method",),
    ),
    # The sampler gives an empty latent its model's channels (16 for Flux).
    "EmptySD3LatentImage": NodeMap(
        "EmptyLatent",
        {"width": "width", "height": "height", "batch_size": "batch_size"},
        ("latent",),
        widgets=("width", "height", "batch_size"),
    ),
    "ModelSamplingFlux": NodeMap(
        "ModelSamplingFlux",
        {name: name for name in ("model", "max_shift", "base_shift", "width", "height")},
        ("model",),
        widgets=("max_shift", "base_shift", "width", "height"),
    ),
    "ModelSamplingSD3": NodeMap(
        "ModelSamplingSD3", {"model": "model", "shift": "shift"}, ("model",), widgets=("shift",)
    ),
    "ModelSamplingAuraFlow": NodeMap(
        "ModelSamplingAuraFlow",
        {"model": "model", "shift": "shift", "sampling": "sampling"},
        ("model",),
        widgets=("shift", "sampling"),
        adapt=_aura_flow_sampling,
    ),
    "CLIPTextEncodeLumina2": NodeMap(
        "TextEncodeLumina2",
        {name: name for name in ("clip", "system_prompt", "user_prompt")},
        ("conditioning",),
        widgets=("system_prompt", "user_prompt"),
    ),
    "CLIPTextEncode": NodeMap(
        "TextEncode", {"clip": "clip", "text": "text"}, ("conditioning",), widgets=("text",)
    ),
    "CLIPTextEncodeSDXL": NodeMap(
        "TextEncodeSDXL",
        {
            name: name
            for name in (
                "clip",
                "width",
                "height",
                "crop_w",
                "crop_h",
                "target_width",
                "target_height",
                "text_g",
                "text_l",
            )
        },
        ("conditioning",),
        widgets=(
            "width",
            "height",
            "crop_w",
            "crop_h",
            "target_width",
            "target_height",
            "text_g",
            "text_l",
        ),
    ),
    "CLIPTextEncodeSDXLRefiner": NodeMap(
        "TextEncodeSDXLRefiner",
        {name: name for name in ("clip", "ascore", "width", "height", "text")},
        ("conditioning",),
        widgets=("ascore", "width", "height", "text"),
    ),
    "EmptyLatentImage": NodeMap(
        "EmptyLatent",
        {"width": "width", "height": "height", "batch_size": "batch_size"},
        ("latent",),
        widgets=("width", "height", "batch_size"),
    ),
    "KSampler": NodeMap(
        "KSampler",
        {**_SAMPLER_INPUTS, "seed": "seed", "denoise": "denoise"},
        ("latent",),
        widgets=("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
        seeded=frozenset({"seed"}),
        values={"sampler_name": SAMPLER_NAMES},
    ),
    "KSamplerAdvanced": NodeMap(
        "KSamplerAdvanced",
        {
            **_SAMPLER_INPUTS,
            "noise_seed": "seed",
            "add_noise": "add_noise",
            "start_at_step": "start_at_step",
            "end_at_step": "end_at_step",
            "return_with_leftover_noise": "return_with_leftover_noise",
        },
        ("latent",),
        widgets=(
            "add_noise",
            "noise_seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "start_at_step",
            "end_at_step",
            "return_with_leftover_noise",
        ),
        seeded=frozenset({"noise_seed"}),
        values={
            "sampler_name": SAMPLER_NAMES,
            "add_noise": SWITCH,
            "return_with_leftover_noise": SWITCH,
        },
        strict_values=frozenset({"add_noise", "return_with_leftover_noise"}),
        adapt=_ksampler_advanced,
    ),
    "VAEDecode": NodeMap("VAEDecode", {"samples": "latent", "vae": "vae"}, ("image",)),
    "LTXVSeparateAVLatent": NodeMap(
        "SeparateAVLatent", {"av_latent": "av_latent"}, ("video_latent", "audio_latent")
    ),
    "VAEEncode": NodeMap("VAEEncode", {"pixels": "image", "vae": "vae"}, ("latent",)),
    "VAEDecodeTiled": NodeMap(
        "VAEDecodeTiled",
        {"samples": "latent", "vae": "vae", **{name: name for name in TILED_WIDGETS}},
        ("image",),
        widgets=TILED_WIDGETS,
    ),
    "VAEEncodeTiled": NodeMap(
        "VAEEncodeTiled",
        {"pixels": "image", "vae": "vae", **{name: name for name in TILED_WIDGETS}},
        ("latent",),
        widgets=TILED_WIDGETS,
    ),
    "ModelAttentionBackend": NodeMap(
        "ModelAttentionBackend",
        {"model": "model", "attention": "attention"},
        ("model",),
        widgets=("attention",),
    ),
    "VAEEncodeForInpaint": NodeMap(
        "VAEEncodeForInpaint",
        {"pixels": "image", "vae": "vae", "mask": "mask", "grow_mask_by": "grow_mask_by"},
        ("latent",),
        widgets=("grow_mask_by",),
    ),
    "InpaintModelConditioning": NodeMap(
        "InpaintModelConditioning",
        {
            "positive": "positive",
            "negative": "negative",
            "vae": "vae",
            "pixels": "image",
            "mask": "mask",
            "noise_mask": "noise_mask",
        },
        ("positive", "negative", "latent"),
        widgets=("noise_mask",),
        adapt=_inpaint_conditioning,
    ),
    "InstructPixToPixConditioning": NodeMap(
        "InstructPixToPixConditioning",
        {"positive": "positive", "negative": "negative", "vae": "vae", "pixels": "image"},
        ("positive", "negative", "latent"),
    ),
    "DifferentialDiffusion": NodeMap(
        "DifferentialDiffusion",
        {"model": "model", "strength": "strength"},
        ("model",),
        widgets=("strength",),
    ),
    "SetLatentNoiseMask": NodeMap(
        "SetLatentNoiseMask", {"samples": "latent", "mask": "mask"}, ("latent",)
    ),
    "LoadImage": NodeMap(
        "LoadImage",
        {"image": "image"},
        ("image", "mask"),
        widgets=("image", "upload"),
        ignored=frozenset({"upload"}),
    ),
    "SaveImage": NodeMap(
        "SaveImage",
        {"images": "image", "filename_prefix": "filename_prefix"},
        ("image",),
        widgets=("filename_prefix",),
        output_node=True,
    ),
    "PreviewImage": NodeMap("PreviewImage", {"images": "image"}, ("image",), output_node=True),
    "LatentUpscale": NodeMap(
        "LatentUpscale",
        {
            "samples": "latent",
            "upscale_method": "method",
            "width": "width",
            "height": "height",
            "crop": "crop",
        },
        ("latent",),
        widgets=("upscale_method", "width", "height", "crop"),
        values={"method": LATENT_METHODS},
        strict_values=frozenset({"method"}),
        adapt=_resize_to_size,
    ),
    "LatentUpscaleBy": NodeMap(
        "LatentUpscale",
        {"samples": "latent", "upscale_method": "method", "scale_by": "scale"},
        ("latent",),
        widgets=("upscale_method", "scale_by"),
        values={"method": LATENT_METHODS},
        strict_values=frozenset({"method"}),
    ),
    "ImageScale": NodeMap(
        "Upscale",
        {
            "image": "image",
            "upscale_method": "method",
            "width": "width",
            "height": "height",
            "crop": "crop",
        },
        ("image",),
        widgets=("upscale_method", "width", "height", "crop"),
        values={"method": UPSCALE_METHODS},
        strict_values=frozenset({"method"}),
        adapt=_image_scale,
    ),
    "ImageScaleBy": NodeMap(
        "Upscale",
        {"image": "image", "upscale_method": "method", "scale_by": "scale"},
        ("image",),
        widgets=("upscale_method", "scale_by"),
        values={"method": UPSCALE_METHODS},
        strict_values=frozenset({"method"}),
    ),
    "ConditioningZeroOut": NodeMap(
        "ConditioningZeroOut", {"conditioning": "conditioning"}, ("conditioning",)
    ),
    "PrimitiveInt": NodeMap(
        "Int", {"value": "value"}, ("value",), widgets=("value",), seeded=frozenset({"value"})
    ),
    "PrimitiveFloat": NodeMap("Float", {"value": "value"}, ("value",), widgets=("value",)),
    "PrimitiveString": NodeMap("String", {"value": "value"}, ("value",), widgets=("value",)),
    "PrimitiveStringMultiline": NodeMap(
        "String", {"value": "value"}, ("value",), widgets=("value",)
    ),
    # Utilities of ComfyUI's templates (easel/nodes/switches.py, math_expression.py,
    # text_utils.py, image_utils.py).
    "PrimitiveBoolean": NodeMap("Boolean", {"value": "value"}, ("value",), widgets=("value",)),
    "ComfySwitchNode": NodeMap(
        "Switch",
        {"switch": "switch", "on_false": "on_false", "on_true": "on_true"},
        ("output",),
        widgets=("switch",),
        optional=frozenset({"on_false", "on_true"}),
        any_inputs=frozenset({"on_false", "on_true"}),
    ),
    "ComfyMathExpression": NodeMap(
        "MathExpression",
        {"expression": "expression", **{f"values.{letter}": letter for letter in "abcdefgh"}},
        ("float", "int", "bool"),
        widgets=("expression",),
        optional=frozenset("abcdefgh"),
    ),
    "StringConcatenate": NodeMap(
        "ConcatenateText",
        {"string_a": "a", "string_b": "b", "delimiter": "delimiter"},
        ("text",),
        widgets=("string_a", "string_b", "delimiter"),
    ),
    "StringReplace": NodeMap(
        "ReplaceText",
        {"string": "text", "find": "find", "replace": "replace"},
        ("text",),
        widgets=("string", "find", "replace"),
    ),
    "RegexReplace": NodeMap(
        "RegexReplace",
        {
            "string": "string",
            "regex_pattern": "regex_pattern",
            "replace": "replace",
            "case_insensitive": "case_insensitive",
            "multiline": "multiline",
            "dotall": "dotall",
            "count": "count",
        },
        ("text",),
        widgets=(
            "string",
            "regex_pattern",
            "replace",
            "case_insensitive",
            "multiline",
            "dotall",
            "count",
        ),
    ),
    # TextGenerate and small utilities of the templates (easel/nodes/text_generate.py,
    # json_utils.py, template_utils.py, image_filters.py).
    "TextGenerate": NodeMap(
        "TextGenerate",
        {
            **{
                name: name
                for name in (
                    "clip",
                    "prompt",
                    "max_length",
                    "sampling_mode",
                    "thinking",
                    "use_default_template",
                    "system_prompt",
                    "image",
                    "video",
                    "audio",
                    "mtp",
                    *_TEXTGEN_POSITIONS,
                )
            },
            **{f"sampling_mode.{name}": name for name in TEXTGEN_SAMPLING},
            "images.image_0": "image",
        },
        ("generated_text", "thinking"),
        widgets=("prompt", "max_length", "sampling_mode", *_TEXTGEN_POSITIONS),
        optional=frozenset({"image", "video", "audio", "system_prompt"}),
        adapt=_text_generate,
    ),
    "JsonExtractString": NodeMap(
        "ExtractJsonValue",
        {"json_string": "json_string", "key": "key"},
        ("text",),
        widgets=("json_string", "key"),
    ),
    "StringFormat": NodeMap(
        "FormatText",
        {"f_string": "f_string", **{f"values.{letter}": letter for letter in "abcdefgh"}},
        ("text",),
        widgets=("f_string",),
        optional=frozenset("abcdefgh"),
        any_inputs=frozenset("abcdefgh"),
    ),
    "CustomCombo": NodeMap(
        "Choice",
        {"choice": "choice", "index": "index"},
        ("text", "index"),
        widgets=("choice", "index"),
    ),
    "SetFirstSigma": NodeMap(
        "SetFirstSigma", {"sigmas": "sigmas", "sigma": "sigma"}, ("sigmas",), widgets=("sigma",)
    ),
    "GrowMask": NodeMap(
        "GrowMask",
        {"mask": "mask", "expand": "expand", "tapered_corners": "tapered_corners"},
        ("mask",),
        widgets=("expand", "tapered_corners"),
    ),
    "ImageBlur": NodeMap(
        "BlurImage",
        {"image": "image", "blur_radius": "blur_radius", "sigma": "sigma"},
        ("image",),
        widgets=("blur_radius", "sigma"),
    ),
    "ImageBlend": NodeMap(
        "BlendImages",
        {name: name for name in ("image1", "image2", "blend_factor", "blend_mode")},
        ("image",),
        widgets=("blend_factor", "blend_mode"),
    ),
    "PreviewAny": NodeMap(
        "PreviewAsText", {"source": "source"}, ("text",), any_inputs=frozenset({"source"})
    ),
    "GetImageSize": NodeMap("ImageSize", {"image": "image"}, ("width", "height", "batch_size")),
    "ImageScaleToTotalPixels": NodeMap(
        "ScaleToTotalPixels",
        {
            "image": "image",
            "upscale_method": "method",
            "megapixels": "megapixels",
            "resolution_steps": "resolution_steps",
        },
        ("image",),
        widgets=("upscale_method", "megapixels", "resolution_steps"),
        values={"method": UPSCALE_METHODS},
        strict_values=frozenset({"method"}),
    ),
    "ResizeImageMaskNode": NodeMap(
        "ResizeImageMask",
        {
            "input": "input",
            "resize_type": "resize_type",
            "scale_method": "scale_method",
            **{
                f"resize_type.{name}": name
                for name in (
                    "width",
                    "height",
                    "crop",
                    "multiplier",
                    "longer_size",
                    "shorter_size",
                    "megapixels",
                    "multiple",
                    "match",
                )
            },
            **{name: name for name in _RESIZE_POSITIONS},
        },
        ("resized",),
        widgets=("resize_type", *_RESIZE_POSITIONS),
        optional=frozenset({"match"}),
        adapt=_resize_image_mask,
    ),
    "ImageStitch": NodeMap(
        "ImageStitch",
        {
            name: name
            for name in (
                "image1",
                "image2",
                "direction",
                "match_image_size",
                "spacing_width",
                "spacing_color",
            )
        },
        ("image",),
        widgets=("direction", "match_image_size", "spacing_width", "spacing_color"),
        optional=frozenset({"image2"}),
    ),
    "Canny": NodeMap(
        "Canny",
        {"image": "image", "low_threshold": "low_threshold", "high_threshold": "high_threshold"},
        ("image",),
        widgets=("low_threshold", "high_threshold"),
    ),
    "BatchImagesNode": NodeMap(
        "BatchImages",
        {f"images.image{i}": f"image{i}" for i in range(16)},
        ("image",),
        optional=frozenset(f"image{i}" for i in range(16)),
    ),
    "ResolutionSelector": NodeMap(
        "ResolutionSelector",
        {"aspect_ratio": "aspect_ratio", "megapixels": "megapixels", "multiple": "multiple"},
        ("width", "height"),
        widgets=("aspect_ratio", "megapixels", "multiple"),
    ),
    # Marigold v2 (easel.nodes.marigold) and conditioning files (easel.nodes.conditioning_files)
    "MarigoldV2PostProcess": NodeMap(
        "MarigoldV2PostProcess",
        {"image": "image", "prediction": "prediction"},
        ("image",),
        widgets=("prediction",),
    ),
    "ConditioningLoader": NodeMap(
        "ConditioningLoader",
        {"conditioning_name": "conditioning_name"},
        ("conditioning",),
        widgets=("conditioning_name",),
    ),
    "SaveConditioning": NodeMap(
        "SaveConditioning",
        {"conditioning": "conditioning", "filename_prefix": "filename_prefix"},
        ("conditioning",),
        widgets=("filename_prefix",),
        output_node=True,
    ),
    "ImageCompare": NodeMap(
        "CompareImages",
        {"image_a": "image_a", "image_b": "image_b", "compare_view": "compare_view"},
        (),
        ignored=frozenset({"compare_view"}),
        optional=frozenset({"image_a", "image_b"}),
    ),
    "SaveImageAdvanced": NodeMap(
        "SaveImage",
        {
            "images": "image",
            "filename_prefix": "filename_prefix",
            "format": "format",
            "format.bit_depth": "bit_depth",
            "format.input_color_space": "input_color_space",
            **{name: name for name in _SAVE_POSITIONS},
        },
        ("image",),
        widgets=("filename_prefix", "format", *_SAVE_POSITIONS),
        adapt=_save_image_advanced,
        output_node=True,
    ),
    "ImageScaleToMaxDimension": NodeMap(
        "ResizeImageMask",
        {"image": "input", "upscale_method": "scale_method", "largest_size": "longer_size"},
        ("resized",),
        widgets=("upscale_method", "largest_size"),
        adapt=_scale_to_max_dimension,
    ),
    "RegexExtract": NodeMap(
        "RegexExtract",
        {
            "string": "string",
            "regex_pattern": "regex_pattern",
            "mode": "mode",
            "case_insensitive": "case_insensitive",
            "multiline": "multiline",
            "dotall": "dotall",
            "group_index": "group_index",
        },
        ("text",),
        widgets=(
            "string",
            "regex_pattern",
            "mode",
            "case_insensitive",
            "multiline",
            "dotall",
            "group_index",
        ),
    ),
    "StringLength": NodeMap("TextLength", {"string": "text"}, ("length",), widgets=("string",)),
    "ImageInvert": NodeMap("InvertImage", {"image": "image"}, ("image",)),
    "InvertMask": NodeMap("InvertMask", {"mask": "mask"}, ("mask",)),
    "ImageToMask": NodeMap(
        "ImageToMask", {"image": "image", "channel": "channel"}, ("mask",), widgets=("channel",)
    ),
    "MaskToImage": NodeMap("MaskToImage", {"mask": "mask"}, ("image",)),
    "JoinImageWithAlpha": NodeMap(
        "JoinImageWithAlpha", {"image": "image", "alpha": "alpha"}, ("image",)
    ),
    "MaskPreview": NodeMap("PreviewMask", {"mask": "mask"}, ("mask",), output_node=True),
    # SAM 3 / 3.1 (easel.nodes.sam3)
    "SAM3_Detect": NodeMap(
        "SAM3Detect",
        {
            name: name
            for name in (
                "model",
                "image",
                "conditioning",
                "bboxes",
                "positive_coords",
                "negative_coords",
                "threshold",
                "refine_iterations",
                "individual_masks",
            )
        },
        ("masks", "bboxes"),
        widgets=("threshold", "refine_iterations", "individual_masks"),
        optional=frozenset({"conditioning", "bboxes", "positive_coords", "negative_coords"}),
    ),
    # Depth Anything 3 Mono/Metric-Large (easel.nodes.depth_anything3)
    "LoadDA3Model": NodeMap(
        "LoadDA3Model",
        {"model_name": "model_name", "weight_dtype": "weight_dtype"},
        ("da3_model",),
        widgets=("model_name", "weight_dtype"),
    ),
    "DA3Inference": NodeMap(
        "DA3Inference",
        {
            name: name
            for name in ("da3_model", "image", "resolution", "resize_method", "mode")
        },
        ("da3_geometry",),
        widgets=("resolution", "resize_method", "mode"),
        values={"mode": {"mono": "mono"}},
        strict_values=frozenset({"mode"}),
    ),
    "DA3Render": NodeMap(
        "DA3Render",
        {
            "da3_geometry": "da3_geometry",
            "output": "output",
            "output.normalization": "normalization",
            "output.apply_sky_clip": "apply_sky_clip",
            "output.colored": "colored",
        },
        ("image",),
        widgets=("output", "output.normalization", "output.apply_sky_clip"),
    ),
    "ComfyNumberConvert": NodeMap(
        "ConvertNumber", {"value": "value"}, ("float", "int"), any_inputs=frozenset({"value"})
    ),
    "EmptyImage": NodeMap(
        "EmptyImage",
        {name: name for name in ("width", "height", "batch_size", "color")},
        ("image",),
        widgets=("width", "height", "batch_size", "color"),
    ),
    "SolidMask": NodeMap(
        "SolidMask",
        {name: name for name in ("value", "width", "height")},
        ("mask",),
        widgets=("value", "width", "height"),
    ),
    "ThresholdMask": NodeMap(
        "ThresholdMask", {"mask": "mask", "value": "value"}, ("mask",), widgets=("value",)
    ),
    "FeatherMask": NodeMap(
        "FeatherMask",
        {name: name for name in ("mask", "left", "top", "right", "bottom")},
        ("mask",),
        widgets=("left", "top", "right", "bottom"),
    ),
    "MaskComposite": NodeMap(
        "MaskComposite",
        {name: name for name in ("destination", "source", "x", "y", "operation")},
        ("mask",),
        widgets=("x", "y", "operation"),
    ),
    "ImageCompositeMasked": NodeMap(
        "ImageCompositeMasked",
        {name: name for name in ("destination", "source", "x", "y", "resize_source", "mask")},
        ("image",),
        widgets=("x", "y", "resize_source"),
        optional=frozenset({"mask"}),
    ),
    # Easel's node refuses an index past the batch where ComfyUI's takes the last image.
    "ImageFromBatch": NodeMap(
        "ImageFromBatch",
        {"image": "image", "batch_index": "index", "length": "length"},
        ("image",),
        widgets=("batch_index", "length"),
    ),
    "FluxKontextImageScale": NodeMap("FluxKontextImageScale", {"image": "image"}, ("image",)),
    "ImagePadForOutpaint": NodeMap(
        "ImagePadForOutpaint",
        {name: name for name in ("image", "left", "top", "right", "bottom", "feathering")},
        ("image", "mask"),
        widgets=("left", "top", "right", "bottom", "feathering"),
    ),
    # Latent slicing and Qwen-Image-Layered (easel/nodes/latent_cut.py, qwen_layered.py).
    "LatentCut": NodeMap(
        "LatentCut",
        {"samples": "samples", "dim": "dim", "index": "index", "amount": "amount"},
        ("latent",),
        widgets=("dim", "index", "amount"),
    ),
    "LatentCutToBatch": NodeMap(
        "LatentCutToBatch",
        {"samples": "samples", "dim": "dim", "slice_size": "slice_size"},
        ("latent",),
        widgets=("dim", "slice_size"),
    ),
    "EmptyQwenImageLayeredLatentImage": NodeMap(
        "EmptyQwenImageLayeredLatentImage",
        {name: name for name in ("width", "height", "layers", "batch_size")},
        ("latent",),
        widgets=("width", "height", "layers", "batch_size"),
    ),
    "ControlNetInpaintingAliMamaApply": NodeMap(
        "ControlNetInpaintingAliMamaApply",
        {name: name for name in ("positive", "negative", "control_net", "vae", "image", "mask")}
        | {name: name for name in ("strength", "start_percent", "end_percent")},
        ("positive", "negative"),
        widgets=("strength", "start_percent", "end_percent"),
    ),
    # The 3-D preview (the image, the "view" widget) is ComfyUI's frontend's only.
    "CameraAngle": NodeMap(
        "CameraAngle",
        {name: name for name in ("horizontal_angle", "vertical_angle", "zoom", "image")},
        ("camera_info", "prompt"),
        widgets=("horizontal_angle", "vertical_angle", "zoom", "view"),
        ignored=frozenset({"view", "image"}),
        optional=frozenset({"image"}),
    ),
}

# ComfyUI-GGUF's loaders (city96's custom nodes): GGUF files load through the same Easel loaders
# (the file's extension picks the reader: easel/models/gguf_files.py). They have no device
# widget; UnetLoaderGGUFAdvanced's dequantisation options have no effect (Easel dequantises
# on load); the Triple and Quadruple loaders take the inputs of ComfyUI's own.
_GGUF_ADVANCED = ("dequant_dtype", "patch_dtype", "patch_on_device")
NODE_MAPS.update(
    {
        "UnetLoaderGGUF": NodeMap(
            "DiffusionModelLoader", {"unet_name": "name"}, ("model",), widgets=("unet_name",)
        ),
        "UnetLoaderGGUFAdvanced": NodeMap(
            "DiffusionModelLoader",
            {"unet_name": "name", **{name: name for name in _GGUF_ADVANCED}},
            ("model",),
            widgets=("unet_name", *_GGUF_ADVANCED),
            ignored=frozenset(_GGUF_ADVANCED),
        ),
        "CLIPLoaderGGUF": NodeMap(
            "TextEncoderLoader",
            {"clip_name": "name", "type": "type"},
            ("clip",),
            widgets=("clip_name", "type"),
            values=NODE_MAPS["CLIPLoader"].values,
            strict_values=frozenset({"type"}),
        ),
        "DualCLIPLoaderGGUF": NodeMap(
            "DualTextEncoderLoader",
            {"clip_name1": "name1", "clip_name2": "name2", "type": "type"},
            ("clip",),
            widgets=("clip_name1", "clip_name2", "type"),
            values=NODE_MAPS["DualCLIPLoader"].values,
            strict_values=frozenset({"type"}),
        ),
        "TripleCLIPLoaderGGUF": NODE_MAPS["TripleCLIPLoader"],
        "QuadrupleCLIPLoaderGGUF": NODE_MAPS["QuadrupleCLIPLoader"],
    }
)

# Editor-only ComfyUI node types: they never run (the UI format resolves them away).
NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"

# ComfyUI node types that are refused with a reason of their own (not just "no equivalent").
UNSUPPORTED: dict[str, str] = {
    "DiffControlNetLoader": "ComfyUI's DiffControlNetLoader (a ControlNet stored as the "
    "difference to one model) is not supported: use ControlNetLoader "
    "with a complete ControlNet file",
}


def merged_node_maps(extra: Mapping[str, NodeMap] | None = None) -> dict[str, NodeMap]:
    """The built-in table plus `extra` entries (a plugin's nodes); an extra entry may add a
    ComfyUI type but never replace a built-in one (ValueError names the clash)."""
    if not extra:
        return NODE_MAPS
    clashes = sorted(set(extra) & set(NODE_MAPS))
    if clashes:
        raise ValueError(f"ComfyUI node types already mapped by Easel: {', '.join(clashes)}")
    wrong = sorted(name for name, spec in extra.items() if not isinstance(spec, NodeMap))
    if wrong:
        raise ValueError(
            f"mappings for ComfyUI node types {', '.join(wrong)} are not "
            "easel.comfy.mapping.NodeMap objects"
        )
    return {**NODE_MAPS, **extra}
