"""Mage-Flow modules from ComfyUI's split files: the diffusion model (`diffusion_models/`,
mage_flow*_int8_convrot / *_bf16), through CLIPLoader type `mage` its text encoder
(`text_encoders/qwen3vl_4b*`: Qwen3-VL 4B), and the Mage-VAE (`vae/mage_flow_vae*`, read by
VAELoader through easel.models.vae_files and easel.models.mage_vae).

- The transformer file is in Qwen-Image's keys (`transformer_blocks.N.img_mod.1`, `txt_norm`,
  `time_text_embed.timestep_embedder`, `norm_out.linear`, ...), with or without
  `model.diffusion_model.`; Easel's MageFlowTransformer2DModel (easel.models.mage_transformer)
  uses the same names, so the keys load unchanged. The config is read off the shapes
  (easel.models.families.mage_flow). int8_convrot files (the templates' quantised transformer)
  are dequantised through comfy-kitchen (easel.models.quantized_files, `easel[quantized]`).
- The text encoder is read as Qwen-Image 2.1's Qwen3-VL is (easel.models.qwen21_loading: the
  language model with its config off the shapes, and the vision tower when the file has one,
  which the edit models need: the images to edit are seen by it).

There is no single-file Mage-Flow checkpoint and no diffusers folder (no library has the model).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import mage_flow
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, TextEncoderPart
from easel.models.transformer_files import (
    diffusion_model_files,
    fitted,
    unprefixed,
)

KIND = "qwen3vl"


# -- the transformer ----------------------------------------------------------------------------
def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A MageFlowTransformer2DModel from a file in Qwen-Image's keys."""
    from easel.models.mage_transformer import MageFlowTransformer2DModel
    from easel.models.state_dicts import load_into

    def build() -> Any:
        missing = "no Mage-Flow transformer (txt_norm, transformer_blocks) in the file"
        sub = unprefixed(state, mage_flow.prefix_of(state), missing)
        config = mage_flow.transformer_config(sub)
        return load_into(MageFlowTransformer2DModel, config, sub, dtype, "Mage-Flow transformer")

    return fitted(path, "a Mage-Flow transformer", build)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    mage_flow.MAGE_FLOW,
    mage_flow.recognise,
    kind="mage-flow",
    what="a Mage-Flow transformer",
    build=build_transformer,
    family_of=mage_flow.family_of,
)


# -- the text encoder (CLIPLoader type mage) ----------------------------------------------------
def build_text_encoder(path: Path, state: Mapping[str, Any], manager: Any) -> tuple[Any, Any]:
    """(model, tokenizer) of a Qwen3-VL file: transformers' Qwen3VLForConditionalGeneration
    when the file has the vision tower, else the language model alone."""
    from easel.models import qwen21_loading
    from easel.models.qwen_tokenizer import qwen_tokenizer

    if not qwen21_loading.is_qwen3_vl(state):
        raise ModelError(
            f"{path.name} is not a text encoder the mage type takes ({summarise(state)}): it "
            "takes Qwen3-VL (qwen3vl_4b) files (model.layers.N.self_attn.q_norm ...)"
        )
    tokenizer = manager.load_module(
        ("qwen25-tokenizer", "qwen25"),
        lambda: qwen_tokenizer(checkpoint=path.name, roots=manager.roots),
    )
    model = qwen21_loading.build_text_encoder(path, state, manager.dtype, tokenizer)
    return model, tokenizer


def mage_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type mage: Mage-Flow's Qwen3-VL file (ComfyUI's qwen3vl_4b*)."""
    from easel.models.transformer_files import read_weights

    (path,) = paths
    key = str(path.resolve())
    model, tokenizer = manager.load_module(
        (key, "mage-text-encoder"),
        lambda: build_text_encoder(path, read_weights(path, manager), manager),
    )
    hold(manager, key, {f"text_encoder:{KIND}": model})
    part = TextEncoderPart(
        mage_flow.QWEN3VL_4B.key, tokenizer, model, layer=-1, layer_norm=True, kind=KIND
    )
    return ClipHandle(name, (part,), manager, family=mage_flow.MAGE_FLOW)
