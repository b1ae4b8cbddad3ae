"""Flux.2 modules from ComfyUI's split files: the diffusion model (`diffusion_models/`,
flux2_dev*.safetensors, flux-2-klein*.safetensors) and, through CLIPLoader type `flux2`, its
text encoder (`text_encoders/`: a Mistral-Small-3.x file for dev, a Qwen3 file for Klein); the
VAE comes from VAELoader (easel.models.flux2_vae).

Key conversion is diffusers' `convert_flux2_transformer_checkpoint_to_diffusers`; the config is
read off the tensor shapes (easel.models.families.flux2).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import flux2
from easel.models.families.recognise import summarise
from easel.models.flux_loading import dequantize_scaled_fp8, hold, storage_dtype
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle


def convert_transformer(state: Mapping[str, Any]) -> dict[str, Any]:
    """Original (BFL) keys -> diffusers Flux2Transformer2DModel keys, by diffusers' converter
    (it needs no width: Flux.2's single blocks keep their fused projection)."""
    from diffusers.loaders.single_file_utils import (
        convert_flux2_transformer_checkpoint_to_diffusers,
    )

    prefix = flux2.prefix_of(state)
    if prefix is None:
        raise ModelError("no Flux.2 transformer (double_stream_modulation_img) in the file")
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(convert_flux2_transformer_checkpoint_to_diffusers(sub))


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A Flux2Transformer2DModel from an original-layout state dict."""
    from diffusers import Flux2Transformer2DModel

    from easel.models.state_dicts import load_into

    try:
        config = flux2.transformer_config(state)
        converted = convert_transformer(dict(state))
        return load_into(Flux2Transformer2DModel, config, converted, dtype, "Flux.2 transformer")
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        raise ModelError(
            f"{path.name} looks like a Flux.2 transformer but does not fit that "
            f"architecture ({type(exc).__name__}: {exc})"
        ) from None


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are a Flux.2 transformer's (family_files)."""
    return flux2.recognise(state) is not None


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from a diffusion-model-only file (ComfyUI's UNETLoader). fp8 weight dtypes keep
    the weights in fp8 and compute in the manager's dtype (diffusers' layerwise casting)."""
    from easel.models.state_dicts import read_state_dict

    storage = storage_dtype(weight_dtype)

    def load() -> Any:
        state = dequantize_scaled_fp8(read_state_dict(path, manager.allow_unsafe_pickle))
        if flux2.recognise(state) is None:
            raise ModelError(
                f"{path.name} is not a Flux.2 transformer ({summarise(state)}): Easel reads "
                "them in the original layout (double_blocks / single_blocks)"
            )
        module = build_transformer(state, manager.dtype, path)
        if storage is not None:
            module.enable_layerwise_casting(storage_dtype=storage, compute_dtype=manager.dtype)
            module.easel_compute_dtype = manager.dtype  # what the sampler feeds it
        return module

    module = manager.load_module((str(path.resolve()), f"flux2-transformer:{weight_dtype}"), load)
    return model_handle(name, module, manager, flux2.family_of(module.config))


def model_handle(
    name: str, module: Any, manager: Any, family: flux2.Flux2Family, vae: VaeHandle | None = None
) -> ModelHandle:
    return ModelHandle(
        name,
        module,
        dict(family.scheduler_config),
        family.latent.factor,
        manager,
        vae=vae,
        family=family,
    )


# -- text encoders (CLIPLoader type flux2) -----------------------------------------------------
def text_encoder(path: Path, manager: Any) -> tuple[str, Any, Any]:
    """One Flux.2 text encoder file, loaded once: (kind "mistral" or "qwen3", model,
    tokenizer)."""
    from easel.models import flux2_text_encoders as encoders
    from easel.models.state_dicts import read_state_dict

    key = str(path.resolve())

    def load() -> tuple[str, Any, Any]:
        state = dequantize_scaled_fp8(read_state_dict(path, manager.allow_unsafe_pickle))
        found = encoders.kind_of(state)
        if found is None:
            raise ModelError(
                f"{path.name} is not a text encoder Flux.2 takes ({summarise(state)}): "
                "type flux2 reads a Mistral-Small-3.x (dev) or a Qwen3 (Klein) language model "
                "(model.layers.*)"
            )
        kind, prefix = found
        try:
            tokenizer = encoders.tokenizer(kind, path, state, manager.roots)
            model = encoders.build(kind, state, prefix, manager.dtype)
        except ModelError as exc:
            raise ModelError(f"{path.name}: {exc}") from None
        except (RuntimeError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(
                f"{path.name} looks like a {kind} text encoder but does not fit that "
                f"architecture ({type(exc).__name__}: {exc})"
            ) from None
        return kind, model, tokenizer

    loaded = manager.load_module((key, "flux2-text-encoder"), load)
    hold(manager, key, {f"text_encoder:{loaded[0]}": loaded[1]})
    return loaded  # type: ignore[no-any-return]


def flux2_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type flux2: a Mistral-Small-3.x file makes a Flux.2 dev CLIP, a Qwen3 file a
    Flux.2 Klein one."""
    (path,) = paths
    kind, model, tokenizer = text_encoder(path, manager)
    family = flux2.FLUX2_DEV if kind == "mistral" else flux2.FLUX2_KLEIN
    part = TextEncoderPart(kind, tokenizer, model, layer_norm=False, kind="llm")
    return ClipHandle(name, (part,), manager, family=family)
