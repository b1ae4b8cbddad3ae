"""Fibo 2.0 modules from split files (diffusion_models/, text_encoders/, vae/).

- The transformer: BriaFibo2Transformer2DModel's keys (with or without
  `model.diffusion_model.`). diffusers 0.42 has no single-file converter for Fibo 2.0 and
  ComfyUI's own Fibo 2 code could not be read, so files are taken in diffusers' layout; the
  config is read off the shapes (easel.models.families.fibo2.transformer_config).
- The text encoder (CLIPLoader type `fibo2`): Qwen3-VL as ComfyUI's `qwen3vl_4b` /
  `qwen3vl_8b` files hold it (`model.layers.N`, `visual.*`), built by Qwen-Image 2.1's loader
  as transformers' Qwen3VLForConditionalGeneration (vision tower included: the images to edit,
  and TextGenerate's image, are seen by it) or, without `visual.*`, the language model alone.
  Fibo 2.0 reads hidden states up to 35, so the model needs 35 layers or more.
- The VAE is the Flux.2 VAE (VAELoader reads `flux2-vae.safetensors`).

Quantised files (the templates' int8 ConvRot) are dequantised through comfy-kitchen
(easel.models.lumina_loading.read_weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import fibo2
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.lumina_loading import read_weights
from easel.models.transformer_files import (
    diffusion_model_files,
    family_handle,
    fitted,
    unprefixed,
)

KIND = "qwen3vl"


# -- the transformer ----------------------------------------------------------------------------
def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A BriaFibo2Transformer2DModel from a diffusers-keyed file."""
    from diffusers import BriaFibo2Transformer2DModel

    from easel.models.state_dicts import load_into

    def build() -> Any:
        missing = "no Fibo 2.0 transformer (perceiver, noise_refiner) in the file"
        sub = unprefixed(state, fibo2.prefix_of(state), missing)
        config = fibo2.transformer_config(sub)
        return load_into(BriaFibo2Transformer2DModel, config, sub, dtype, "Fibo 2.0 transformer")

    return fitted(path, "a Fibo 2.0 transformer", build)


def model_handle(name: str, module: Any, manager: Any, vae: VaeHandle | None = None) -> ModelHandle:
    return family_handle(fibo2.FIBO2, name, module, manager, vae)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    fibo2.FIBO2,
    fibo2.recognise,
    kind="fibo2",
    what="a Fibo 2.0 transformer",
    build=build_transformer,
    read=read_weights,
)


# -- the text encoder: Qwen3-VL's language model ------------------------------------------------
def build_text_encoder(path: Path, state: Mapping[str, Any], manager: Any) -> tuple[Any, Any]:
    """(model, tokenizer) of a Qwen3-VL file with the layers Fibo 2.0 reads: transformers'
    Qwen3VLForConditionalGeneration when the file has the vision tower (the images to edit are
    seen by it), else the language model alone (Qwen-Image 2.1's loader builds both)."""
    from easel.models import qwen21_loading
    from easel.models.families.recognise import summarise
    from easel.models.qwen_tokenizer import qwen_tokenizer

    prefix = qwen21_loading.text_prefix(state)
    if prefix is None or not qwen21_loading.is_qwen3_vl(state):
        raise ModelError(
            f"{path.name} is not a text encoder the fibo2 type takes ({summarise(state)}): it "
            "takes Qwen3-VL (qwen3vl_4b) files (model.layers.N.self_attn.q_norm ...)"
        )
    layers = fibo2.count({k[len(prefix) :]: v for k, v in state.items()}, "layers.")
    deepest = max(max(bundle) for bundle in fibo2.OUT_LAYERS)
    if layers < deepest:
        raise ModelError(
            f"{path.name}: a Qwen3-VL text encoder of {layers} layers; Fibo 2.0 reads hidden "
            f"states up to {deepest} (Qwen3-VL-4B has 36 layers)"
        )
    tokenizer = manager.load_module(
        ("qwen25-tokenizer", "qwen25"),
        lambda: qwen_tokenizer(checkpoint=path.name, roots=manager.roots),
    )
    model = qwen21_loading.build_text_encoder(path, state, manager.dtype, tokenizer)
    return model, tokenizer


def text_encoder(path: Path, manager: Any) -> tuple[Any, Any]:
    """One text encoder file, loaded once: (model, tokenizer)."""
    key = str(path.resolve())
    loaded = manager.load_module(
        (key, "fibo2-text-encoder"),
        lambda: build_text_encoder(path, read_weights(path, manager), manager),
    )
    hold(manager, key, {f"text_encoder:{KIND}": loaded[0]})
    return loaded  # type: ignore[no-any-return]


def fibo2_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type fibo2: a Qwen3-VL file."""
    (path,) = paths
    model, tokenizer = text_encoder(path, manager)
    part = TextEncoderPart(
        fibo2.QWEN3VL_4B.key, tokenizer, model, layer=-1, layer_norm=False, kind=KIND
    )
    return ClipHandle(name, (part,), manager, family=fibo2.FIBO2)
