"""OmniGen2 modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/).

- The transformer file holds OmniGen2's own keys (ComfyUI's layout: `x_embedder`,
  `time_caption_embed`, `noise_refiner`, `ref_image_refiner`, `context_refiner`, `layers.N`,
  `norm_out`, `image_index_embedding`), with or without `model.diffusion_model.`; the config
  is read off the shapes (easel.models.families.omnigen2) and the module is
  easel.models.omnigen2_transformer's, whose parameter names are those keys.
- The text encoder is ComfyUI's CLIPLoader type omnigen2: Qwen2.5-VL-3B in the original Hugging
  Face keys (qwen_2.5_vl_fp16.safetensors), loaded as Qwen-Image's Qwen2.5-VL is
  (easel.models.qwen_loading, the same cache entry), with Qwen's tokenizer.
- The VAE is the Flux VAE (`ae.safetensors`, VAELoader).

There are no OmniGen2 single-file checkpoints or diffusers folders (no library has the model).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import omnigen2
from easel.models.families.recognise import summarise
from easel.models.handles import ClipHandle, TextEncoderPart
from easel.models.transformer_files import diffusion_model_files, fitted, unprefixed


def transformer_state(state: Mapping[str, Any]) -> dict[str, Any]:
    missing = "no OmniGen2 transformer (time_caption_embed, layers.N.attn)"
    return unprefixed(state, omnigen2.prefix_of(state), missing)


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """An OmniGen2Transformer from ComfyUI's file."""
    from easel.models.omnigen2_transformer import OmniGen2Transformer
    from easel.models.state_dicts import load_into

    return fitted(
        path,
        "an OmniGen2 transformer",
        lambda: load_into(
            OmniGen2Transformer,
            omnigen2.transformer_config(state),
            transformer_state(state),
            dtype,
            "OmniGen2 transformer",
        ),
    )


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    omnigen2.OMNIGEN2,
    omnigen2.recognise,
    kind="omnigen2",
    what="an OmniGen2 transformer",
    build=build_transformer,
)


def omnigen2_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type omnigen2: one Qwen2.5-VL file (ComfyUI's qwen_2.5_vl_fp16, the 3B)."""
    from easel.models import qwen_loading
    from easel.models.flux_loading import hold
    from easel.models.qwen_tokenizer import qwen_tokenizer
    from easel.models.transformer_files import read_weights

    (path,) = paths
    key = str(path.resolve())

    def load() -> Any:
        state = read_weights(path, manager)
        if not qwen_loading.is_qwen25_vl(state):
            raise ModelError(
                f"{path.name} is not a Qwen2.5-VL text encoder ({summarise(state)}); type "
                "omnigen2 takes ComfyUI's qwen_2.5_vl_fp16 file (model.layers.*, visual.*)"
            )
        tokenizer = manager.load_module(
            ("qwen25-tokenizer", "qwen25"),
            lambda: qwen_tokenizer(checkpoint=path.name, roots=manager.roots),
        )
        return qwen_loading.build_text_encoder(path, state, tokenizer, manager.dtype), tokenizer

    model, tokenizer = manager.load_module((key, "qwen25_vl"), load)
    hold(manager, key, {"text_encoder:qwen": model})
    spec = omnigen2.QWEN25_3B
    part = TextEncoderPart(spec.key, tokenizer, model, layer=spec.layer, kind=spec.key)
    return ClipHandle(name, (part,), manager, family=omnigen2.OMNIGEN2)
