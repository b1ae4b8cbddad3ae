"""Wan 2.1 modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/,
clip_vision/) and from diffusers folders.

- The transformer file holds the original Wan keys (`blocks.N.self_attn.q`, `head.head`,
  `img_emb.proj`, ...; ComfyUI's repackaged files, with or without `model.diffusion_model.`),
  converted by diffusers' `convert_wan_transformer_to_diffusers`; a file in diffusers' own keys
  loads as it is. The config is read off the shapes (easel.models.families.wan). ChronoEdit's
  file is a Wan 2.1 image-to-video transformer: its temporal rope spacing is ComfyUI's ScaleROPE
  (easel.models.wan_rope), as in ComfyUI.
- The text encoder is UMT5-XXL (CLIPLoader type wan), transformers' UMT5EncoderModel; ComfyUI's
  scaled fp8 files are multiplied out on load (easel.models.transformer_files.read_weights).
- The VAE is the Wan 2.1 VAE (`wan_2.1_vae.safetensors`, VAELoader: easel.models.qwen_vae), the
  image encoder CLIP ViT-H (`clip_vision_h.safetensors`, CLIPVisionLoader).
- A diffusers folder (WanPipeline, WanImageToVideoPipeline, ChronoEditPipeline) gives MODEL,
  CLIP and VAE as a checkpoint does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import wan
from easel.models.families.recognise import summarise
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import (
    diffusion_model_files,
    family_handle,
    fitted,
    no_single_file,
)

FOLDER_CLASSES = ("WanPipeline", "WanImageToVideoPipeline", "ChronoEditPipeline")
LATENT_CHANNELS = 16  # the Wan 2.1 VAE's; Wan 2.2 5B's 48-channel latents are another VAE


def transformer_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The transformer's weights in diffusers' keys (converted from the Wan layout)."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    found = wan.layout_of(state)
    if found is None:
        raise ModelError("no Wan transformer (blocks.N.self_attn, head.modulation)")
    prefix, layout = found
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if layout == "diffusers":
        return sub
    return dict(convert_wan_transformer_to_diffusers(sub))


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A WanTransformer3DModel from ComfyUI's (original-layout) file."""
    from diffusers import WanTransformer3DModel

    from easel.models.qwen_loading import build_module

    def build() -> Any:
        weights = transformer_state(state)
        config = wan.transformer_config(weights)
        if config["out_channels"] != LATENT_CHANNELS:
            raise ModelError(
                f"a Wan transformer on {config['out_channels']}-channel latents (Wan 2.2 5B's "
                "48-channel VAE): Easel reads the Wan 2.1 family's 16-channel models"
            )
        return build_module(WanTransformer3DModel, config, weights, dtype, "Wan transformer")

    return fitted(path, "a Wan 2.1 transformer", build)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    wan.WAN21,
    wan.recognise,
    kind="wan21",
    what="a Wan 2.1 transformer",
    build=build_transformer,
)


# -- UMT5-XXL (CLIPLoader type wan) ------------------------------------------------------------
def wan_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type wan: one UMT5-XXL file (ComfyUI's umt5_xxl_*), its tokenizer the
    SentencePiece model stored in the file or a UMT5 tokenizer folder (easel.models.wan_text)."""
    from easel.models import wan_text
    from easel.models.transformer_files import read_weights

    (path,) = paths

    def load() -> Any:
        state = read_weights(path, manager, ("spiece_model",))
        prefix = wan_text.umt5_prefix(state)
        if prefix is None:
            raise ModelError(
                f"{path.name} is not a UMT5 text encoder ({summarise(state)}); type wan takes "
                "ComfyUI's umt5_xxl file (encoder.block.N with a relative attention bias each)"
            )
        model = fitted(
            path, "a UMT5 encoder", lambda: wan_text.build_umt5(state, prefix, manager.dtype)
        )
        tokenizer = wan_text.umt5_tokenizer(
            path, state.get("spiece_model"), manager.roots, int(model.config.vocab_size)
        )
        return model, tokenizer

    model, tokenizer = manager.load_module((str(path.resolve()), "umt5"), load)
    return clip_handle(name, model, tokenizer, manager)


def clip_handle(name: str, model: Any, tokenizer: Any, manager: Any) -> ClipHandle:
    part = TextEncoderPart(wan.UMT5_TEXT.key, tokenizer, model, kind="umt5")
    return ClipHandle(name, (part,), manager, family=wan.WAN21)


# -- diffusers folders ---------------------------------------------------------------------------
# Wan has no single-file checkpoints (ComfyUI ships split files).
is_checkpoint, single_file_checkpoint = no_single_file(
    "Wan models load from split files or a diffusers folder"
)


def is_folder(folder: Path) -> bool:
    """A diffusers folder of a Wan 2.1 or ChronoEdit pipeline."""
    from easel.models.loading import pipeline_class

    return pipeline_class(folder) in FOLDER_CLASSES


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """(MODEL, CLIP, VAE) from a diffusers Wan / ChronoEdit folder: transformer/, text_encoder/
    (UMT5EncoderModel), tokenizer/, vae/ (AutoencoderKLWan, seen as Easel's Wan VAE). The image
    encoder of an image-to-video folder is loaded by CLIPVisionLoader from clip_vision/."""
    from easel.models.loading import model_index
    from easel.models.qwen_vae import QwenVae

    # ChronoEdit's folders name their own class (the same weights, its temporal rope spacing)
    _, transformer_class = model_index(folder).get(
        "transformer", ("diffusers", "WanTransformer3DModel")
    )
    transformer = manager.module(folder / "transformer", "diffusers", transformer_class)
    text_encoder = manager.module(folder / "text_encoder", "transformers", "UMT5EncoderModel")
    tokenizer = manager.module(folder / "tokenizer", "transformers", "AutoTokenizer")
    vae = manager.load_module(
        (str((folder / "vae").resolve()), "wan-vae"),
        lambda: QwenVae(manager.module(folder / "vae", "diffusers", "AutoencoderKLWan")),
    )
    model = family_handle(wan.WAN21, name, transformer, manager)
    clip = clip_handle(name, text_encoder, tokenizer, manager)
    return model, clip, VaeHandle(name, vae, manager)
