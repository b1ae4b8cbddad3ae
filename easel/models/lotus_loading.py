"""Lotus from ComfyUI's diffusion-model file (lotus-depth-d-v1-1.safetensors in
`diffusion_models/`, loaded by UNETLoader): a Stable Diffusion 2 UNet in the original LDM key
layout whose `label_emb` takes Lotus's 4-wide task embedding.

The config is read off the shapes and the keys converted by the same path as Stable Diffusion
single files (easel.models.single_file.build_unet: diffusers' own
`create_unet_diffusers_config_from_ldm` / `convert_ldm_unet_checkpoint`, which make the
`label_emb` a "projection" class embedding).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import lotus
from easel.models.families.recognise import UNET_PREFIX, summarise
from easel.models.flux_loading import storage_dtype, stored_as
from easel.models.handles import ModelHandle


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are a Lotus UNet's (family_files)."""
    return lotus.recognise(state) is not None


def build_unet(state: Mapping[str, Any], dtype: Any) -> Any:
    """diffusers' UNet2DConditionModel from a Lotus UNet's LDM keys (any prefix)."""
    from easel.models.single_file import build_unet as build_ldm_unet

    prefix = lotus.unet_prefix(state)
    if prefix is None:
        raise ModelError(f"not a Lotus UNet ({summarise(state)})")
    unet_keys = {
        UNET_PREFIX + k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and not k.startswith(("first_stage_model.", "cond_stage_model."))
    }
    return build_ldm_unet(unet_keys, lotus.LOTUS_D, dtype)


def model_handle(name: str, unet: Any, manager: Any) -> ModelHandle:
    family = lotus.LOTUS_D
    return ModelHandle(
        name,
        unet,
        dict(family.scheduler_config),
        family.latent.factor,
        manager,
        family=family,
    )


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from ComfyUI's Lotus file (UNETLoader). fp8 weight dtypes keep the weights in
    fp8 and compute in the manager's dtype."""
    from easel.models.transformer_files import read_weights

    storage = storage_dtype(weight_dtype)

    def load() -> Any:
        state = read_weights(path, manager)
        try:
            unet = build_unet(state, manager.dtype)
        except ModelError as exc:
            raise ModelError(f"{path.name}: {exc}") from None
        except (RuntimeError, ValueError, KeyError, IndexError, AssertionError) as exc:
            raise ModelError(
                f"{path.name} looks like a Lotus UNet (label_emb of width "
                f"{lotus.TASK_WIDTH}), but its tensors do not fit that architecture "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return stored_as(unet, storage, manager.dtype)

    module = manager.load_module((str(path.resolve()), f"lotus-unet:{weight_dtype}"), load)
    return model_handle(name, module, manager)
