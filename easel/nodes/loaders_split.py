"""Loaders for ComfyUI's split model files: a diffusion model alone (`diffusion_models/`, also
`unet/`) and text encoders (`text_encoders/`, also `clip/`); the VAE comes from VAELoader."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Model
from easel.nodes.model_access import discovered, manager, model_errors

WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
SINGLE_TYPES = ["stable_diffusion"]  # ComfyUI CLIPLoader types Easel has a family for
DUAL_TYPES = ["flux"]  # ComfyUI DualCLIPLoader types Easel has a family for


def _files_fingerprint(kind: str, inputs_named: tuple[str, ...]) -> Any:
    def fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
        """The named files' sizes and times, so a replaced file is reloaded downstream."""
        from easel.models import discovery

        models = ctx.services.get("models")
        stamps = []
        for input_name in inputs_named:
            name = str(inputs.get(input_name, ""))
            try:
                path = (
                    models.resolve(kind, name)
                    if models is not None
                    else discovery.resolve(kind, name)
                )
            except Exception:
                stamps.append("missing")
                continue
            stat = path.stat()
            stamps.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
        return "|".join(stamps)

    return fingerprint


@node(
    category="loaders",
    outputs={"model": Model},
    fingerprint=_files_fingerprint("diffusion_models", ("name",)),
)
def DiffusionModelLoader(
    ctx: Context,
    name: str = Input(choices=discovered("diffusion_models")),
    weight_dtype: str = Input("default", choices=WEIGHT_DTYPES),
) -> Any:
    """Load a diffusion model file alone (ComfyUI's UNETLoader): a Flux.1 dev, schnell or
    Fill transformer in its original key layout, from `diffusion_models/`. Pair it with
    DualTextEncoderLoader and VAELoader. `fp8_*` keeps the weights in 8-bit floats and computes
    in the device's dtype (half the memory of bf16)."""
    from easel.models import flux_loading

    models = manager(ctx)
    with model_errors("name"):
        path = models.resolve("diffusion_models", name)
        return flux_loading.diffusion_model(name, path, models, weight_dtype)


@node(
    category="loaders",
    outputs={"clip": Clip},
    fingerprint=_files_fingerprint("text_encoders", ("name",)),
)
def TextEncoderLoader(
    ctx: Context,
    name: str = Input(choices=discovered("text_encoders")),
    type: str = Input("stable_diffusion", choices=SINGLE_TYPES),
) -> Any:
    """Load one text encoder file (ComfyUI's CLIPLoader) from `text_encoders/`:
    `stable_diffusion` takes a CLIP-L file (transformers keys) as a Stable Diffusion 1.x text
    encoder. (Easel's own CLIPLoader loads a full CLIP model for CLIPScore.)"""
    from easel.models import flux_loading
    from easel.models.families import sd
    from easel.models.handles import ClipHandle, TextEncoderPart

    models = manager(ctx)
    with model_errors("name"):
        path = models.resolve("text_encoders", name)
        kind, model, tokenizer = flux_loading.text_encoder(path, models)
    if kind != "clip_l":
        raise NodeError(
            f"{name} is a {kind} text encoder; type {type!r} takes a CLIP-L file", "name"
        )
    spec = sd.CLIP_L
    part = TextEncoderPart(spec.key, tokenizer, model, layer=spec.layer, layer_norm=spec.layer_norm)
    return ClipHandle(name, (part,), models, family=sd.SD1)


@node(
    category="loaders",
    outputs={"clip": Clip},
    fingerprint=_files_fingerprint("text_encoders", ("name1", "name2")),
)
def DualTextEncoderLoader(
    ctx: Context,
    name1: str = Input(choices=discovered("text_encoders")),
    name2: str = Input(choices=discovered("text_encoders")),
    type: str = Input("flux", choices=DUAL_TYPES),
) -> Any:
    """Load two text encoder files (ComfyUI's DualCLIPLoader) from `text_encoders/`: for
    `flux`, a CLIP-L file and a T5-XXL encoder file (either order; transformers key layout).
    The CLIP has parts "l" (pooled) and "t5" (embeddings); encode with TextEncode or
    TextEncodeFlux."""
    from easel.models import flux_loading

    models = manager(ctx)
    with model_errors("name1"):
        paths = [models.resolve("text_encoders", name1)]
    with model_errors("name2"):
        paths.append(models.resolve("text_encoders", name2))
    with model_errors("name2"):
        return flux_loading.flux_clip(f"{name1}+{name2}", paths, models)


NODES = [DiffusionModelLoader, TextEncoderLoader, DualTextEncoderLoader]
