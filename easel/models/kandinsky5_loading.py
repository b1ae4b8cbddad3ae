"""Kandinsky 5 (image) modules from ComfyUI's split files (diffusion_models/, text_encoders/,
vae/) and from a diffusers Kandinsky5T2IPipeline folder.

- The transformer file (`kandinsky5lite_t2i.safetensors`) holds diffusers' own
  Kandinsky5Transformer3DModel keys (ComfyUI's layout is the same), with or without
  `model.diffusion_model.`; the config is read off the shapes (easel.models.families.kandinsky5).
- The text encoders are ComfyUI's DualCLIPLoader type kandinsky5_image: Qwen2.5-VL-7B (loaded by
  easel.models.qwen_loading, shared with Qwen-Image) and CLIP-L (easel.models.flux_loading), in
  either order.
- The VAE is the Flux VAE (`ae.safetensors`, VAELoader).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import kandinsky5
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import (
    diffusion_model_files,
    family_handle,
    fitted,
    no_single_file,
    unprefixed,
)


def transformer_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The transformer's keys without their prefix."""
    missing = "no Kandinsky 5 transformer (visual_transformer_blocks)"
    return unprefixed(state, kandinsky5.prefix_of(state), missing)


def with_in_channels(module: Any) -> Any:
    """The transformer with `in_channels` in its config (its latent channels, plus the
    conditioning image's and the mask's for the visual_cond models): the samplers read it to
    tell inpainting models apart; Kandinsky's config calls it in_visual_dim."""
    config = module.config
    cond = bool(config.visual_cond)
    channels = int(config.in_visual_dim) * (2 if cond else 1) + int(cond)
    if getattr(config, "in_channels", None) != channels:
        module.register_to_config(in_channels=channels)
    return module


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A Kandinsky5Transformer3DModel from ComfyUI's (diffusers-keyed) file."""
    from diffusers import Kandinsky5Transformer3DModel

    from easel.models.qwen_loading import build_module

    def build() -> Any:
        config = kandinsky5.transformer_config(state)
        module = build_module(
            Kandinsky5Transformer3DModel,
            config,
            transformer_state(state),
            dtype,
            "Kandinsky 5 transformer",
        )
        return with_in_channels(module)

    return fitted(path, "a Kandinsky 5 transformer", build)


def model_handle(name: str, module: Any, manager: Any, vae: VaeHandle | None = None) -> ModelHandle:
    return family_handle(kandinsky5.KANDINSKY5, name, module, manager, vae)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    kandinsky5.KANDINSKY5,
    kandinsky5.recognise,
    kind="kandinsky5",
    what="a Kandinsky 5 transformer",
    build=build_transformer,
)


def kandinsky5_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """DualCLIPLoader type kandinsky5_image: a Qwen2.5-VL file (ComfyUI's qwen_2.5_vl_7b*) and
    a CLIP-L file, in either order."""
    from easel.models import family_files
    from easel.models.flux_loading import text_encoder
    from easel.models.qwen_loading import is_qwen25_vl, qwen_clip

    qwen: TextEncoderPart | None = None
    clip_l: TextEncoderPart | None = None
    for path in paths:
        if is_qwen25_vl(family_files.keys_of(path, manager)):
            (qwen,) = qwen_clip(name, [path], manager).parts
            continue
        kind, model, tokenizer = text_encoder(path, manager)
        if kind != "clip_l":
            raise ModelError(
                f"{path.name} is a {kind} text encoder; Kandinsky 5 takes Qwen2.5-VL "
                "(qwen_2.5_vl_7b) and CLIP-L (clip_l)"
            )
        clip_l = TextEncoderPart("l", tokenizer, model, pooled=True)
    if qwen is None or clip_l is None:
        names = " and ".join(p.name for p in paths)
        raise ModelError(
            f"Kandinsky 5 needs a Qwen2.5-VL (qwen_2.5_vl_7b) and a CLIP-L (clip_l) text "
            f"encoder; {names} are not one of each"
        )
    return ClipHandle(name, (qwen, clip_l), manager, family=kandinsky5.KANDINSKY5)


# -- diffusers folders (family_files.CHECKPOINTS) ---------------------------------------------
# ComfyUI has no single-file Kandinsky 5 checkpoint layout: none is read as one.
is_checkpoint, single_file_checkpoint = no_single_file(
    "Kandinsky 5 comes as split files: DiffusionModelLoader, DualTextEncoderLoader type "
    "kandinsky5_image and VAELoader"
)


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a Kandinsky 5 image pipeline's."""
    from easel.models import loading

    return loading.pipeline_class(folder) == "Kandinsky5T2IPipeline"


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers Kandinsky5T2IPipeline folder: transformer/, text_encoder/ (Qwen2.5-VL),
    tokenizer/ (its processor), text_encoder_2/ (CLIP-L), tokenizer_2/, vae/, scheduler/."""
    from easel.models import loading

    index = loading.model_index(folder)

    def part(sub: str, library: str, cls: str) -> Any:
        return manager.module(folder / sub, *index.get(sub, (library, cls)))

    transformer = with_in_channels(part("transformer", "diffusers", "Kandinsky5Transformer3DModel"))
    vae = part("vae", "diffusers", "AutoencoderKL")
    qwen = part("text_encoder", "transformers", "Qwen2_5_VLForConditionalGeneration")
    clip = part("text_encoder_2", "transformers", "CLIPTextModel")
    tok = part("tokenizer", "transformers", "Qwen2VLProcessor")
    tok = getattr(tok, "tokenizer", tok)  # the processor's tokenizer: text only here
    tok2 = part("tokenizer_2", "transformers", "CLIPTokenizer")
    family = kandinsky5.KANDINSKY5
    sched = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    vae_handle = VaeHandle(name, vae, manager)
    model = family_handle(family, name, transformer, manager, vae_handle, sched)
    parts = (
        TextEncoderPart("qwen", tok, qwen, kind="qwen"),
        TextEncoderPart("l", tok2, clip, pooled=True),
    )
    return model, ClipHandle(name, parts, manager, family=family), vae_handle
