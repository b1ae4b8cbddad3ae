"""Ideogram 4 modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/).

- The transformers (`ideogram4` and `ideogram4_unconditional`): ComfyUI's keys are
  Ideogram4Transformer2DModel's except in attention, where ComfyUI fuses q, k and v
  (`attention.qkv`) and calls the output projection `attention.o`. diffusers 0.42 has no
  single-file converter for Ideogram 4, so `to_diffusers` below splits and renames those (the
  key map is read off ComfyUI's comfy/ldm/ideogram4/model.py and diffusers'
  transformer_ideogram4.py, which agree on every other name). The config is read off the shapes.
- The text encoder (CLIPLoader type `ideogram4`): Qwen3-VL-8B's language model as ComfyUI's
  `qwen3vl_8b` file holds it (`model.layers.N`, ...; the vision tower is not read), built as
  transformers' Qwen3VLTextModel by the Krea 2 loader (easel.models.krea2_loading), which reads
  the same Qwen3-VL files; Ideogram 4 needs its 36 layers (it reads hidden states 1 ... 36).
- The VAE is the Flux.2 VAE (VAELoader reads `flux2-vae.safetensors`).

Quantised files (the `_int8` template's) are dequantised through comfy-kitchen
(easel.models.lumina_loading.read_weights); scaled fp8 files are multiplied out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import ideogram4
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.lumina_loading import read_weights
from easel.models.transformer_files import (
    diffusion_model_files,
    family_handle,
    fitted,
)

KIND = "qwen3vl"


# -- the transformer ----------------------------------------------------------------------------
def to_diffusers(state: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """ComfyUI's keys as Ideogram4Transformer2DModel's: `attention.qkv` split in three,
    `attention.o` -> `attention.to_out.0`; a missing text projection (an unconditional file
    without one) filled with zeros, as it never reads text."""
    import torch

    hidden = int(config["attention_head_dim"]) * int(config["num_attention_heads"])
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.endswith(".attention.qkv.weight"):
            head = key[: -len("qkv.weight")]
            q, k, v = value.split(hidden, dim=0)
            out[head + "to_q.weight"], out[head + "to_k.weight"] = q, k
            out[head + "to_v.weight"] = v
        elif ".attention.o." in key:
            out[key.replace(".attention.o.", ".attention.to_out.0.")] = value
        else:
            out[key] = value
    features = int(config["llm_features_dim"])
    like = out["input_proj.weight"]
    if "llm_cond_proj.weight" not in out:
        out["llm_cond_proj.weight"] = torch.zeros(hidden, features, dtype=like.dtype)
        out["llm_cond_proj.bias"] = torch.zeros(hidden, dtype=like.dtype)
        out["llm_cond_norm.weight"] = torch.ones(features, dtype=like.dtype)
    return out


def _load(config: Mapping[str, Any], state: dict[str, Any], dtype: Any) -> Any:
    """Ideogram4Transformer2DModel built on the meta device and filled from `state`; its
    rotary frequencies (a buffer no file holds) made afresh."""
    import torch
    from diffusers import Ideogram4Transformer2DModel
    from diffusers.models.transformers.transformer_ideogram4 import Ideogram4MRoPE

    with torch.device("meta"):
        module = Ideogram4Transformer2DModel.from_config(dict(config))
    module.rotary_emb = Ideogram4MRoPE(
        int(config["attention_head_dim"]), int(config["rope_theta"]), config["mrope_section"]
    )
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    result = module.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"the Ideogram 4 transformer's weights do not match its shape: "
            f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})"
        )
    return module.eval().requires_grad_(False)


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """An Ideogram4Transformer2DModel from a ComfyUI-layout file; `easel_text_free` marks one
    without a text projection (it runs on image tokens alone)."""

    def build() -> Any:
        config = ideogram4.transformer_config(state)
        prefix = ideogram4.prefix_of(state) or ""
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        module = _load(config, to_diffusers(sub, config), dtype)
        module.easel_text_free = "llm_cond_proj.weight" not in sub
        return module

    return fitted(path, "an Ideogram 4 transformer", build)


def model_handle(name: str, module: Any, manager: Any, vae: VaeHandle | None = None) -> ModelHandle:
    return family_handle(ideogram4.IDEOGRAM4, name, module, manager, vae)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    ideogram4.IDEOGRAM4,
    ideogram4.recognise,
    kind="ideogram4",
    what="an Ideogram 4 transformer",
    build=build_transformer,
    read=read_weights,
)


# -- the text encoder: Qwen3-VL-8B's language model ---------------------------------------------
def build_text_encoder(path: Path, state: Mapping[str, Any], manager: Any) -> tuple[Any, Any]:
    """(model, tokenizer) of a Qwen3-VL text encoder file with the layers Ideogram 4 reads."""
    from easel.models import krea2_loading

    prefix = krea2_loading.qwen3_text_prefix(path, state, "ideogram4", "Qwen3-VL-8B (qwen3vl_8b)")
    layers = ideogram4.count({k[len(prefix) :]: v for k, v in state.items()}, "layers.")
    if layers < max(ideogram4.TAP_LAYERS):
        raise ModelError(
            f"{path.name}: a Qwen3-VL text encoder of {layers} layers; Ideogram 4 reads the "
            f"outputs of layers up to {max(ideogram4.TAP_LAYERS)} (Qwen3-VL-8B's 36)"
        )
    return krea2_loading.qwen3_text_encoder(path, state, prefix, manager)


def text_encoder(path: Path, manager: Any) -> tuple[Any, Any]:
    """One text encoder file, loaded once: (model, tokenizer)."""
    key = str(path.resolve())
    loaded = manager.load_module(
        (key, "ideogram4-text-encoder"),
        lambda: build_text_encoder(path, read_weights(path, manager), manager),
    )
    hold(manager, key, {f"text_encoder:{KIND}": loaded[0]})
    return loaded  # type: ignore[no-any-return]


def ideogram4_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type ideogram4: a Qwen3-VL-8B file."""
    (path,) = paths
    model, tokenizer = text_encoder(path, manager)
    part = TextEncoderPart(
        ideogram4.QWEN3VL_8B.key, tokenizer, model, layer=-1, layer_norm=False, kind=KIND
    )
    return ClipHandle(name, (part,), manager, family=ideogram4.IDEOGRAM4)
