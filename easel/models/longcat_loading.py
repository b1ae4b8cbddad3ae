"""LongCat-Image modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/)
and from a diffusers LongCatImagePipeline folder.

- The transformer file holds Black Forest Labs' keys (as ComfyUI's longcat_image_bf16 file),
  converted by diffusers' `convert_flux_transformer_checkpoint_to_diffusers` (through
  easel.models.flux_loading.convert_transformer, which also splits the fused single-block
  weights at any width), or diffusers' own keys. LongCat's transformer has no pooled-text
  embedding, which that converter requires: it is handed shape-only meta placeholders and
  their output dropped, and the timestep embedder renamed to LongCat's `time_embed`.
- The text encoder is Qwen2.5-VL, the file of ComfyUI's type qwen_image (loaded by
  easel.models.qwen_loading, shared with Qwen-Image).
- The VAE is the Flux VAE (VAELoader).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import longcat
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import (
    diffusion_model_files,
    family_handle,
    fitted,
    no_single_file,
)

TIMESTEP_OLD = "time_text_embed.timestep_embedder."
TIMESTEP_NEW = "time_embed.timestep_embedder."


def convert_transformer(state: Mapping[str, Any]) -> dict[str, Any]:
    """A LongCat transformer's keys (either layout, any prefix) -> LongCatImageTransformer2DModel
    keys."""
    import torch

    from easel.models.flux_loading import convert_transformer as convert_flux

    found = longcat.layout_of(state)
    if found is None:
        raise ModelError("no LongCat-Image transformer (double_blocks without vector_in)")
    layout, prefix = found
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if layout == "diffusers":
        return sub
    hidden = int(sub["img_in.weight"].shape[0])
    placeholders = {  # the pooled-text embedding LongCat does not have (see the docstring)
        "vector_in.in_layer.weight": torch.empty(hidden, 1, device="meta"),
        "vector_in.in_layer.bias": torch.empty(hidden, device="meta"),
        "vector_in.out_layer.weight": torch.empty(hidden, hidden, device="meta"),
        "vector_in.out_layer.bias": torch.empty(hidden, device="meta"),
    }
    converted = convert_flux({**sub, **placeholders})
    out: dict[str, Any] = {}
    for key, value in converted.items():
        if key.startswith("time_text_embed.text_embedder."):
            continue
        if key.startswith(TIMESTEP_OLD):
            key = TIMESTEP_NEW + key[len(TIMESTEP_OLD) :]
        out[key] = value
    return out


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A LongCatImageTransformer2DModel from a ComfyUI-layout (or diffusers-keyed) file."""
    from diffusers import LongCatImageTransformer2DModel

    from easel.models.qwen_loading import build_module

    def build() -> Any:
        config = longcat.transformer_config(state)
        converted = convert_transformer(dict(state))
        return build_module(
            LongCatImageTransformer2DModel, config, converted, dtype, "LongCat-Image transformer"
        )

    return fitted(path, "a LongCat-Image transformer", build)


def model_handle(
    name: str,
    module: Any,
    manager: Any,
    vae: VaeHandle | None = None,
    scheduler_config: Mapping[str, Any] | None = None,
) -> ModelHandle:
    return family_handle(longcat.LONGCAT, name, module, manager, vae, scheduler_config)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    longcat.LONGCAT,
    longcat.recognise,
    kind="longcat",
    what="a LongCat-Image transformer",
    build=build_transformer,
)


def longcat_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type longcat_image: one Qwen2.5-VL file (ComfyUI's qwen_2.5_vl_7b*), the
    same module Qwen-Image's type loads, as LongCat-Image's text encoder."""
    from easel.models.qwen_loading import qwen_clip

    qwen = qwen_clip(name, paths, manager)
    (part,) = qwen.parts
    return ClipHandle(name, (part,), manager, family=longcat.LONGCAT)


# -- diffusers folders (family_files.CHECKPOINTS) ---------------------------------------------
# ComfyUI has no single-file LongCat-Image checkpoint layout: none is read as one.
is_checkpoint, single_file_checkpoint = no_single_file(
    "LongCat-Image comes as split files: DiffusionModelLoader, TextEncoderLoader type "
    "longcat_image and VAELoader"
)


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a LongCat-Image pipeline's."""
    from easel.models import loading

    return loading.pipeline_class(folder).startswith("LongCatImage")


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers LongCatImagePipeline folder: transformer/, text_encoder/, tokenizer/,
    vae/ (AutoencoderKL), scheduler/."""
    from easel.models import loading

    index = loading.model_index(folder)

    def part(sub: str, library: str, cls: str) -> Any:
        return manager.module(folder / sub, *index.get(sub, (library, cls)))

    transformer = part("transformer", "diffusers", "LongCatImageTransformer2DModel")
    vae = part("vae", "diffusers", "AutoencoderKL")
    te = part("text_encoder", "transformers", "Qwen2_5_VLForConditionalGeneration")
    tok = part("tokenizer", "transformers", "Qwen2Tokenizer")
    family = longcat.LONGCAT
    sched = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    vae_handle = VaeHandle(name, vae, manager)
    model = family_handle(family, name, transformer, manager, vae_handle, sched)
    clip = ClipHandle(
        name, (TextEncoderPart("qwen", tok, te, kind="qwen"),), manager, family=family
    )
    return model, clip, vae_handle
