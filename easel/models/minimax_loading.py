"""MiniMax H3 modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/).

- The DiT: ComfyUI's `minimax_h3_*` files (`blocks.N.attn.qkv_proj`, `token_refiner.blocks`,
  `video_patch_proj`, `final_layer`; with or without `model.diffusion_model.`), plain or pruned
  (`adaln_t_table`), built by easel.models.minimax_transformer. Quantised files (the templates'
  int8 ConvRot) are dequantised through comfy-kitchen (transformer_files.read_weights).
- The text encoder (CLIPLoader type `minimax`): Qwen3-VL-32B's language model as ComfyUI's
  `qwen3vl_32b_minimax_h3_*` files hold it (`model.layers.N`, possibly truncated after layer
  50, with or without a final norm), built as transformers' Qwen3VLTextModel with Krea 2's
  loader; the tokenizer is ComfyUI's Qwen tokenizer folder. AWQ files
  (`qwen3vl_32b_minimax_h3_nvfp4_awq`) are refused by name of what they hold: their weights
  need the activation-aware scales at run time, which Easel does not apply.
- The VAE: MiniMax H3's video VAE (VAELoader, easel.models.minimax_vae).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import minimax_h3
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import (
    diffusion_model_files,
    family_handle,
    fitted,
    read_weights,
    unprefixed,
)

KIND = "qwen3vl"


# -- the DiT --------------------------------------------------------------------------------------
def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """MiniMaxH3Transformer3DModel from a ComfyUI-layout file."""
    from easel.models import minimax_transformer

    def build() -> Any:
        missing = "no MiniMax H3 DiT (video_patch_proj, blocks.N) in the file"
        sub = unprefixed(state, minimax_h3.prefix_of(state), missing)
        return minimax_transformer.build(sub, dtype)

    return fitted(path, "a MiniMax H3 DiT", build)


def model_handle(name: str, module: Any, manager: Any, vae: VaeHandle | None = None) -> ModelHandle:
    return family_handle(minimax_h3.MINIMAX_H3, name, module, manager, vae)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    minimax_h3.MINIMAX_H3,
    minimax_h3.recognise,
    kind="minimax-h3",
    what="a MiniMax H3 DiT",
    build=build_transformer,
)


# -- the text encoder: Qwen3-VL-32B's language model ---------------------------------------------
def refuse_awq(path: Path, state: Mapping[str, Any]) -> None:
    """A ModelError for an AWQ-quantised file (its tensors or its quantisation markers say so)."""
    from easel.models.quantized_files import markers

    awq = [k for k in state if "awq" in k.lower()]
    if not awq:
        awq = [
            layer
            for layer, conf in markers(state, path).items()
            if "awq" in " ".join(f"{k}={v}" for k, v in conf.items()).lower()
        ]
    if awq:
        raise ModelError(
            f"{path.name} is AWQ-quantised (e.g. {awq[0]}), which Easel does not read: use "
            "ComfyUI's qwen3vl_32b_minimax_h3_int8_convrot.safetensors (a drop-in swap) or a "
            "bf16 file of the text encoder"
        )


def _header_or_state(path: Path, manager: Any) -> Mapping[str, Any]:
    from easel.models.family_files import keys_of

    return keys_of(path, manager)


def build_text_encoder(path: Path, state: Mapping[str, Any], manager: Any) -> tuple[Any, Any]:
    """(model, tokenizer) of a MiniMax H3 Qwen3-VL file: the language model with at least the
    50 layers MiniMax H3 reads; a file cut after them may lack the final norm (never used)."""
    import torch

    from easel.models.krea2_loading import qwen3_text_encoder, qwen3_text_prefix

    prefix = qwen3_text_prefix(path, state, "minimax", "MiniMax H3's Qwen3-VL-32B")
    layers = minimax_h3.count({k[len(prefix) :]: v for k, v in state.items()}, "layers.")
    if layers < minimax_h3.TEXT_LAYER:
        raise ModelError(
            f"{path.name}: a Qwen3-VL text encoder of {layers} layers; MiniMax H3 reads the "
            f"hidden state after layer {minimax_h3.TEXT_LAYER}"
        )
    weights = dict(state)
    norm = prefix + "norm.weight"
    if norm not in weights:  # ComfyUI's files are cut after layer 50, where no norm is read
        width = int(weights[prefix + "embed_tokens.weight"].shape[1])
        weights[norm] = torch.ones(width, dtype=weights[prefix + "embed_tokens.weight"].dtype)
    return qwen3_text_encoder(path, weights, prefix, manager)


def text_encoder(path: Path, manager: Any) -> tuple[Any, Any]:
    """One text encoder file, loaded once: (model, tokenizer)."""
    refuse_awq(path, _header_or_state(path, manager))
    key = str(path.resolve())
    loaded = manager.load_module(
        (key, "minimax-h3-text-encoder"),
        lambda: build_text_encoder(path, read_weights(path, manager), manager),
    )
    hold(manager, key, {f"text_encoder:{KIND}": loaded[0]})
    return loaded  # type: ignore[no-any-return]


def minimax_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type minimax: a MiniMax H3 Qwen3-VL-32B file."""
    (path,) = paths
    model, tokenizer = text_encoder(path, manager)
    spec = minimax_h3.QWEN3VL_32B
    part = TextEncoderPart(spec.key, tokenizer, model, layer=-1, layer_norm=False, kind=KIND)
    return ClipHandle(name, (part,), manager, family=minimax_h3.MINIMAX_H3)
