"""Boogu-Image modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/).

- The transformer file holds Boogu's own keys (ComfyUI's layout: OmniGen2's embedders and
  refiners, `double_stream_layers.N` with `img_instruct_attn.processor.*`,
  `single_stream_layers.N`, `norm_out`), with or without `model.diffusion_model.`; the config
  is read off the shapes (easel.models.families.boogu) and the module is
  easel.models.boogu_transformer's, whose parameter names are those keys.
- The text encoder is ComfyUI's CLIPLoader type boogu: Qwen3-VL-8B with its vision tower
  (qwen3vl_8b*), loaded as Qwen-Image 2.1's is (easel.models.qwen21_loading, the same cache
  entry), with Qwen's tokenizer.
- The VAE is the Flux VAE (`ae.safetensors`, VAELoader).

There are no Boogu single-file checkpoints or diffusers folders (no library has the model).
ComfyUI's fp8-scaled and int8 files are read as every family's (easel.models.transformer_files).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import boogu
from easel.models.families.recognise import summarise
from easel.models.handles import ClipHandle, TextEncoderPart
from easel.models.transformer_files import diffusion_model_files, fitted, unprefixed


def transformer_state(state: Mapping[str, Any]) -> dict[str, Any]:
    missing = "no Boogu transformer (double_stream_layers.N.img_instruct_attn)"
    return unprefixed(state, boogu.prefix_of(state), missing)


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A BooguTransformer from ComfyUI's file."""
    from easel.models.boogu_transformer import BooguTransformer
    from easel.models.state_dicts import load_into

    return fitted(
        path,
        "a Boogu transformer",
        lambda: load_into(
            BooguTransformer,
            boogu.transformer_config(state),
            transformer_state(state),
            dtype,
            "Boogu transformer",
        ),
    )


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    boogu.BOOGU,
    boogu.recognise,
    kind="boogu",
    what="a Boogu transformer",
    build=build_transformer,
)


def boogu_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type boogu: one Qwen3-VL file with its vision tower (ComfyUI's qwen3vl_8b*),
    loaded as Qwen-Image 2.1's text encoder is."""
    from easel.models import family_files
    from easel.models.qwen21_loading import is_qwen3_vl, qwen21_clip

    (path,) = paths
    state = family_files.keys_of(path, manager)
    if not is_qwen3_vl(state):
        raise ModelError(
            f"{path.name} is not a Qwen3-VL text encoder ({summarise(state)}); type boogu "
            "takes Boogu's qwen3vl_8b file (model.layers.*, visual.*)"
        )
    loaded = qwen21_clip(name, paths, manager)
    parts = tuple(
        TextEncoderPart(boogu.QWEN3VL_8B.key, p.tokenizer, p.model, kind=p.kind)
        for p in loaded.parts
    )
    return ClipHandle(name, parts, manager, family=boogu.BOOGU)
