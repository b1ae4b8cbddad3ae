"""Qwen-Image-Layered from ComfyUI's split files: the diffusion model
(`qwen_image_layered_bf16.safetensors`: diffusers' own keys, as Qwen-Image's, plus
`time_text_embed.addition_t_embedding`), the Qwen2.5-VL text encoder (CLIPLoader type
qwen_image, easel.models.qwen_loading) and the RGBA Qwen VAE (VAELoader,
easel.models.qwen_vae). Listed in easel.models.family_files before Qwen-Image's loader, which
would take the file for a plain Qwen-Image one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models import qwen_layered
from easel.models.errors import ModelError
from easel.models.families.recognise import summarise
from easel.models.flux_loading import storage_dtype, stored_as
from easel.models.handles import ModelHandle
from easel.models.transformer_files import fitted


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file is a Qwen-Image-Layered transformer (family_files)."""
    return qwen_layered.recognise(state) is not None


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A QwenImageTransformer2DModel with the layered rope from a ComfyUI-layout state."""
    from diffusers import QwenImageTransformer2DModel

    from easel.models.qwen_loading import build_module, transformer_state

    def build() -> Any:
        config = qwen_layered.transformer_config(state)
        return build_module(
            QwenImageTransformer2DModel,
            config,
            transformer_state(state),
            dtype,
            "Qwen-Image-Layered transformer",
        )

    return fitted(path, "a Qwen-Image-Layered transformer", build)


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from the diffusion-model file (UNETLoader); fp8 weight dtypes store the weights in
    fp8 and compute in the manager's dtype, as for Qwen-Image."""
    from easel.models.transformer_files import read_weights

    storage = storage_dtype(weight_dtype)

    def load() -> Any:
        state = read_weights(path, manager)
        if qwen_layered.recognise(state) is None:
            raise ModelError(
                f"{path.name} is not a Qwen-Image-Layered transformer ({summarise(state)})"
            )
        module = build_transformer(state, manager.dtype, path)
        return stored_as(module, storage, manager.dtype)

    key = (str(path.resolve()), f"qwen-layered-transformer:{weight_dtype}")
    module = manager.load_module(key, load)
    family = qwen_layered.QWEN_IMAGE_LAYERED
    return ModelHandle(
        name,
        module,
        dict(family.scheduler_config),
        family.latent.factor,
        manager,
        family=family,
    )
