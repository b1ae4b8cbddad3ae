"""JoyImage Edit modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/).

- The transformer file holds diffusers' own JoyImageEditTransformer3DModel keys (ComfyUI's
  layout is the same), with or without `model.diffusion_model.`; the config is read off the
  shapes (easel.models.families.joyimage).
- The text encoder is ComfyUI's CLIPLoader type joyimage: Qwen3-VL-8B with its vision tower
  (loaded by easel.models.qwen21_loading, shared with Qwen-Image 2.1).
- The VAE is the Wan 2.1 VAE (`wan_2.1_vae.safetensors`, VAELoader: easel.models.qwen_vae).

ComfyUI's template ships int8_convrot files: their weights are dequantised through
comfy-kitchen (easel.models.quantized_files, the `easel[quantized]` extra) like every family's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import joyimage
from easel.models.families.recognise import summarise
from easel.models.handles import ClipHandle
from easel.models.transformer_files import diffusion_model_files, fitted, unprefixed


def transformer_state(state: Mapping[str, Any]) -> dict[str, Any]:
    missing = "no JoyImage transformer (double_blocks with modulate_table)"
    return unprefixed(state, joyimage.prefix_of(state), missing)


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A JoyImageEditTransformer3DModel from ComfyUI's (diffusers-keyed) file."""
    from diffusers import JoyImageEditTransformer3DModel

    from easel.models.qwen_loading import build_module

    return fitted(
        path,
        "a JoyImage transformer",
        lambda: build_module(
            JoyImageEditTransformer3DModel,
            joyimage.transformer_config(state),
            transformer_state(state),
            dtype,
            "JoyImage transformer",
        ),
    )


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    joyimage.JOYIMAGE,
    joyimage.recognise,
    kind="joyimage",
    what="a JoyImage transformer",
    build=build_transformer,
)


def joyimage_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type joyimage: one Qwen3-VL-8B file with its vision tower (ComfyUI's
    qwen3vl_8b_joyimage_edit*), loaded as Qwen-Image 2.1's text encoder is."""
    from easel.models import family_files
    from easel.models.qwen21_loading import is_qwen3_vl, qwen21_clip

    (path,) = paths
    state = family_files.keys_of(path, manager)
    if not is_qwen3_vl(state):
        raise ModelError(
            f"{path.name} is not a Qwen3-VL text encoder ({summarise(state)}); type joyimage "
            "takes JoyImage Edit's qwen3vl_8b file"
        )
    loaded = qwen21_clip(name, paths, manager)
    return ClipHandle(name, loaded.parts, manager, family=joyimage.JOYIMAGE)
