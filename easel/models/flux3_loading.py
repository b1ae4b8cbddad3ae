"""Flux 3 modules from ComfyUI's split files: the diffusion model (`diffusion_models/`,
flux3-image-klein-*.safetensors) and, through CLIPLoader type `flux3`, its text encoder
(`text_encoders/qwen3vl_4b*`: Qwen3-VL 4B); the VAE is Flux.2's (VAELoader,
easel.models.flux2_vae).

- The transformer file is in Black Forest Labs' keys (`content_mode_blocks`, `txt_mode_blocks`,
  `single_blocks`, `early_stream_modulations`, ...), with or without `model.diffusion_model.`;
  diffusers' `convert_flux3_transformer_checkpoint_to_diffusers` renames them (and drops the
  training-only REPA heads); the config is read off the shapes (easel.models.families.flux3).
- The text encoder is read as Qwen-Image 2.1's Qwen3-VL is (easel.models.qwen21_loading: the
  language model with its config off the shapes, the vision tower when the file has one).
- The templates' other `flux3` file, the Qwen3.5 9B prompt upsampler (TextGenerate), is refused
  with a clear error: it is a Qwen3.5 language model (a TextGenerate model), which Easel does
  not run. int8_convrot files (the templates' quantised transformer and encoder) are
  dequantised through comfy-kitchen (easel.models.quantized_files, `easel[quantized]`).

ComfyUI has no single-file Flux 3 checkpoint; diffusers' Flux 3 pipelines are modular ones
(no model_index.json Easel could follow), so neither is read as a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import flux3
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, TextEncoderPart
from easel.models.transformer_files import diffusion_model_files, fitted, no_single_file, unprefixed


def convert_transformer(state: Mapping[str, Any]) -> dict[str, Any]:
    """Original (BFL) keys -> diffusers Flux3Transformer2DModel keys, by diffusers' converter
    (ComfyUI's prefix dropped first)."""
    from diffusers.loaders.single_file_utils import (
        convert_flux3_transformer_checkpoint_to_diffusers,
    )

    missing = "no Flux 3 transformer (early_stream_modulations) in the file"
    sub = unprefixed(state, flux3.prefix_of(state), missing)
    return dict(convert_flux3_transformer_checkpoint_to_diffusers(sub))


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A Flux3Transformer2DModel from an original-layout state dict. The query / key norms stay
    float32 whatever `dtype` (the model's `_keep_in_fp32_modules`: its attention normalises in
    float32)."""
    import torch
    from diffusers import Flux3Transformer2DModel

    from easel.models.state_dicts import load_into

    def build() -> Any:
        config = flux3.transformer_config(state)
        converted = convert_transformer(dict(state))
        return load_into(Flux3Transformer2DModel, config, converted, dtype, "Flux 3 transformer")

    module = fitted(path, "a Flux 3 transformer", build)
    for name, sub in module.named_modules():
        if name.endswith(("norm_q", "norm_k")):
            sub.to(torch.float32)
    return module


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    flux3.FLUX3,
    flux3.recognise,
    kind="flux3",
    what="a Flux 3 transformer",
    build=build_transformer,
    hint=": Easel reads them in the original layout (content_mode_blocks / single_blocks)",
    family_of=flux3.family_of,
)


# -- the text encoder (CLIPLoader type flux3) ----------------------------------------------------
def is_prompt_upsampler(state: Mapping[str, Any]) -> bool:
    """Whether a file is a Qwen3.5 language model (the templates' prompt upsampler): its
    layers mix linear attention (`linear_attn`) with full attention."""
    return any(".linear_attn." in key for key in state)


def flux3_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type flux3 with Flux 3's Qwen3-VL file (ComfyUI's qwen3vl_4b*): the Flux 3
    CLIP. The tokenizer is Qwen's (easel.models.qwen_tokenizer)."""
    from easel.models.qwen21_loading import build_text_encoder, is_qwen3_vl
    from easel.models.qwen_tokenizer import qwen_tokenizer
    from easel.models.transformer_files import read_weights

    (path,) = paths
    key = str(path.resolve())

    from easel.models import family_files

    # told by its keys, before its (w4a8) weights are read and dequantised for nothing
    if is_prompt_upsampler(family_files.keys_of(path, manager)):
        raise ModelError(
            f"{path.name} is Flux 3's Qwen3.5 prompt upsampler (a TextGenerate model), which "
            "Easel does not run. Write the full caption yourself and set the template's switch "
            "so that it goes to the text encoder directly"
        )

    def load() -> Any:
        state = read_weights(path, manager)
        if not is_qwen3_vl(state):
            raise ModelError(
                f"{path.name} is not Flux 3's Qwen3-VL text encoder ({summarise(state)})"
            )
        tokenizer = manager.load_module(
            ("qwen25-tokenizer", "qwen25"),
            lambda: qwen_tokenizer(checkpoint=path.name, roots=manager.roots),
        )
        return build_text_encoder(path, state, manager.dtype, tokenizer), tokenizer

    model, tokenizer = manager.load_module((key, "qwen3_vl"), load)
    hold(manager, key, {"text_encoder:qwen3vl": model})
    part = TextEncoderPart("qwen3vl", tokenizer, model, kind="qwen3vl")
    return ClipHandle(name, (part,), manager, family=flux3.FLUX3)


# -- single files and diffusers folders ----------------------------------------------------------
# ComfyUI has no single-file Flux 3 checkpoint layout: none is read as one.
is_checkpoint, single_file_checkpoint = no_single_file(
    "Flux 3 comes as split files: DiffusionModelLoader, TextEncoderLoader type flux3 (the "
    "Qwen3-VL file) and VAELoader (flux2-vae)"
)


def is_folder(folder: Path) -> bool:
    """Flux 3's diffusers pipelines are modular (no model_index.json): no folder is read."""
    return False


def folder_checkpoint(name: str, folder: Path, manager: Any) -> Any:
    raise ModelError(f"{folder.name}: Easel reads Flux 3 from ComfyUI's split files only")
