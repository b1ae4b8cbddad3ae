"""Chroma modules from ComfyUI's split files: the transformer (`diffusion_models/`, Black
Forest Labs' keys plus the approximator `distilled_guidance_layer.*`) and a T5-XXL text encoder
alone (CLIPLoader type `chroma`).

Key conversion is diffusers' `convert_chroma_transformer_checkpoint_to_diffusers`; the config is
read off the shapes (easel.models.families.chroma); T5 is loaded as for Flux
(easel.models.flux_loading).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import chroma
from easel.models.flux_loading import text_encoder
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart
from easel.models.transformer_files import (
    family_handle,
    fitted,
    load_transformer,
    no_single_file,
    unprefixed,
)

DIFFUSERS_WIDTH = 3072  # diffusers' converter splits single blocks' linear1 at this width


def convert_transformer(state: Mapping[str, Any]) -> dict[str, Any]:
    """Original keys -> diffusers ChromaTransformer2DModel keys, by diffusers' converter.

    That converter splits each single block's fused `linear1` (q, k, v, mlp) at Chroma's width
    of 3072: for another width (the tests' tiny models) it is handed shape-only meta tensors and
    the pieces are split here at the real width, as easel.models.flux_loading does for Flux."""
    import torch
    from diffusers.loaders.single_file_utils import (
        convert_chroma_transformer_checkpoint_to_diffusers,
    )

    missing = "no Chroma transformer (distilled_guidance_layer) in the file"
    sub = unprefixed(state, chroma.prefix_of(state), missing)
    hidden = int(sub["img_in.weight"].shape[0])
    fused: dict[int, tuple[Any, Any]] = {}
    if hidden != DIFFUSERS_WIDTH:
        rows = DIFFUSERS_WIDTH * 7  # q, k, v (3 x 3072) + mlp (4 x 3072)
        for key in [k for k in sub if re.fullmatch(r"single_blocks\.\d+\.linear1\.weight", k)]:
            block = int(key.split(".")[1])
            bias_key = key.replace(".weight", ".bias")
            fused[block] = (sub[key], sub[bias_key])
            sub[key] = torch.empty(rows, sub[key].shape[1], device="meta")
            sub[bias_key] = torch.empty(rows, device="meta")
    converted = convert_chroma_transformer_checkpoint_to_diffusers(sub)
    for block, (weight, bias) in fused.items():
        sizes = [hidden, hidden, hidden, int(weight.shape[0]) - 3 * hidden]
        head = f"single_transformer_blocks.{block}."
        for name, w, b in zip(
            ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
            torch.split(weight, sizes),
            torch.split(bias, sizes),
            strict=True,
        ):
            converted[head + name + ".weight"] = w
            converted[head + name + ".bias"] = b
    return converted


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A ChromaTransformer2DModel from an original-layout state dict. Built on the meta device
    and filled from the file; the timestep embedding's fixed table (a computed buffer the file
    does not hold) is built for real."""
    import torch
    from diffusers import ChromaTransformer2DModel
    from diffusers.models.transformers.transformer_chroma import (
        ChromaCombinedTimestepTextProjEmbeddings,
    )

    def build() -> Any:
        config = chroma.transformer_config(state)
        converted = convert_transformer(dict(state))
        with torch.device("meta"):
            module = ChromaTransformer2DModel.from_config(config)
        converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in converted.items()}
        result = module.load_state_dict(converted, strict=False, assign=True)
        if result.missing_keys:
            raise ModelError(
                f"the Chroma transformer weights do not match its shape: "
                f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[:3]})"
            )
        embed = module.time_text_embed
        module.time_text_embed = ChromaCombinedTimestepTextProjEmbeddings(
            num_channels=config["approximator_num_channels"] // 4,
            out_dim=int(embed.mod_proj.shape[0]),
        )
        return module.eval().requires_grad_(False)

    return fitted(path, "a Chroma transformer", build)


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are a Chroma transformer's (family_files)."""
    return chroma.is_chroma(state)


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from a diffusion-model-only file (ComfyUI's UNETLoader)."""
    module = load_transformer(
        path,
        manager,
        weight_dtype,
        kind="chroma",
        what="a Chroma transformer",
        recognised=chroma.is_chroma,
        build=build_transformer,
    )
    return family_handle(chroma.CHROMA, name, module, manager)


def chroma_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type chroma: one T5-XXL file (transformers keys) as Chroma's text encoder."""
    (path,) = paths
    kind, model, tokenizer = text_encoder(path, manager)
    if kind != "t5":
        raise ModelError(f"{path.name} is a {kind} text encoder; type chroma takes a T5 file")
    part = TextEncoderPart("t5", tokenizer, model, kind="t5")
    return ClipHandle(name, (part,), manager, family=chroma.CHROMA)


# -- diffusers folders (family_files.CHECKPOINTS) ---------------------------------------------
# Chroma has no all-in-one single files (ComfyUI ships it as split files).
is_checkpoint, single_file_checkpoint = no_single_file(
    "Chroma loads from split files or a diffusers folder"
)


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a ChromaPipeline's."""
    from easel.models import loading

    for config in (folder / "model_index.json", folder / "transformer" / "config.json"):
        name = str(loading.read_json(config).get("_class_name", "")) if config.is_file() else ""
        if name.startswith("Chroma"):
            return True
    return False


def folder_checkpoint(name: str, folder: Path, manager: Any) -> tuple[ModelHandle, ClipHandle, Any]:
    """A diffusers ChromaPipeline folder (transformer/, text_encoder/, tokenizer/, vae/,
    scheduler/)."""
    from easel.models import loading
    from easel.models.handles import VaeHandle

    index = loading.model_index(folder) if (folder / "model_index.json").is_file() else {}

    def part(sub: str, library: str, cls: str) -> Any:
        return manager.module(folder / sub, *index.get(sub, (library, cls)))

    transformer = part("transformer", "diffusers", "ChromaTransformer2DModel")
    vae = part("vae", "diffusers", "AutoencoderKL")
    t5 = part("text_encoder", "transformers", "T5EncoderModel")
    tokenizer = part("tokenizer", "transformers", "T5TokenizerFast")
    family = chroma.CHROMA
    sched = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    vae_handle = VaeHandle(name, vae, manager)
    model = ModelHandle(
        name,
        transformer,
        dict(sched),
        vae_handle.scale_factor,
        manager,
        vae=vae_handle,
        family=family,
    )
    clip = ClipHandle(
        name, (TextEncoderPart("t5", tokenizer, t5, kind="t5"),), manager, family=family
    )
    return model, clip, vae_handle
