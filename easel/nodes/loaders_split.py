"""Loaders for ComfyUI's split model files: a diffusion model alone (`diffusion_models/`, also
`unet/`) and text encoders (`text_encoders/`, also `clip/`); the VAE comes from VAELoader."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, node
from easel.core.types import Clip, Model
from easel.models.family_files import clip_types
from easel.nodes.model_access import discovered, manager, model_errors

WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
# ComfyUI's CLIPLoader / DualCLIPLoader types Easel has a family for (easel.models.family_files)
SINGLE_TYPES = clip_types(1)
DUAL_TYPES = clip_types(2)


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
    """Load a diffusion model file alone (ComfyUI's UNETLoader) from `diffusion_models/`, in
    its original key layout: the family is told from the keys (docs/models.md lists them).
    Pair it with a text encoder loader and VAELoader. `fp8_*` keeps the weights in 8-bit floats
    and computes in the device's dtype (half the memory of bf16)."""
    from easel.models import family_files

    models = manager(ctx)
    with model_errors("name"):
        path = models.resolve("diffusion_models", name)
        return family_files.diffusion_model(name, path, models, weight_dtype)


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
    """Load one text encoder file (ComfyUI's CLIPLoader) from `text_encoders/`, for the
    model family `type` says: `stable_diffusion` takes a CLIP-L file (transformers keys) as a
    Stable Diffusion 1.x text encoder; `sd3` a T5-XXL file alone for SD3 (docs/models.md
    lists the other types). (Easel's own CLIPLoader loads a full CLIP model for CLIPScore.)"""
    from easel.models import family_files

    models = manager(ctx)
    with model_errors("name"):
        path = models.resolve("text_encoders", name)
        return family_files.load_clip(type, name, [path], models)


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
    TextEncodeFlux. For `sd3`, CLIP-L and CLIP-G files: SD3 without T5. For
    `kandinsky5_image`, a Qwen2.5-VL-7B file and a CLIP-L file (either order): Kandinsky 5."""
    from easel.models import family_files

    models = manager(ctx)
    with model_errors("name1"):
        paths = [models.resolve("text_encoders", name1)]
    with model_errors("name2"):
        paths.append(models.resolve("text_encoders", name2))
    with model_errors("name2"):
        return family_files.load_clip(type, f"{name1}+{name2}", paths, models)


def _load_many(ctx: Context, type_name: str, names: list[str]) -> Any:
    from easel.models import family_files

    models = manager(ctx)
    paths = []
    for index, name in enumerate(names, start=1):
        with model_errors(f"name{index}"):
            paths.append(models.resolve("text_encoders", name))
    with model_errors("type"):
        return family_files.load_clip(type_name, "+".join(names), paths, models)


@node(
    category="loaders",
    outputs={"clip": Clip},
    fingerprint=_files_fingerprint("text_encoders", ("name1", "name2", "name3")),
)
def TripleTextEncoderLoader(
    ctx: Context,
    name1: str = Input(choices=discovered("text_encoders")),
    name2: str = Input(choices=discovered("text_encoders")),
    name3: str = Input(choices=discovered("text_encoders")),
    type: str = Input(choices=clip_types(3)),
) -> Any:
    """Load three text encoder files (ComfyUI's TripleCLIPLoader) from `text_encoders/`, for
    the model family `type` says (docs/models.md lists which files each takes)."""
    return _load_many(ctx, type, [name1, name2, name3])


@node(
    category="loaders",
    outputs={"clip": Clip},
    fingerprint=_files_fingerprint("text_encoders", ("name1", "name2", "name3", "name4")),
)
def QuadrupleTextEncoderLoader(
    ctx: Context,
    name1: str = Input(choices=discovered("text_encoders")),
    name2: str = Input(choices=discovered("text_encoders")),
    name3: str = Input(choices=discovered("text_encoders")),
    name4: str = Input(choices=discovered("text_encoders")),
    type: str = Input(choices=clip_types(4)),
) -> Any:
    """Load four text encoder files (ComfyUI's QuadrupleCLIPLoader) from `text_encoders/`, for
    the model family `type` says (docs/models.md lists which files each takes)."""
    return _load_many(ctx, type, [name1, name2, name3, name4])


# The three- and four-file loaders appear once a family takes that many files.
NODES = [
    DiffusionModelLoader,
    TextEncoderLoader,
    DualTextEncoderLoader,
    *([TripleTextEncoderLoader] if clip_types(3) else []),
    *([QuadrupleTextEncoderLoader] if clip_types(4) else []),
]
