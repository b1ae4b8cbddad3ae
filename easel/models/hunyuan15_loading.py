"""HunyuanVideo 1.5 / Capybara modules from ComfyUI's split files (diffusion_models/,
text_encoders/, vae/) and from a diffusers HunyuanVideo15Pipeline folder.

- The transformer file (`capybara_v0.1.safetensors`, `hunyuanvideo1.5_*.safetensors`) holds
  Tencent's original keys, with or without `model.diffusion_model.`; they are renamed to
  diffusers' HunyuanVideo15Transformer3DModel (easel.models.hunyuan15_keys) and the config is
  read off the shapes (easel.models.families.hunyuan15).
- The text encoders are ComfyUI's DualCLIPLoader type hunyuan_video_15: Qwen2.5-VL-7B (loaded
  by easel.models.qwen_loading, shared with Qwen-Image) and the Glyph-SDXL-v2 byT5 encoder
  (`byt5_small_glyphxl_fp16.safetensors`, T5 keys; transformers' T5EncoderModel with its config
  read off the shapes, and transformers' ByT5Tokenizer, which needs no files), in either order.
- The VAE (`hunyuanvideo15_vae_fp16.safetensors`, VAELoader) is easel.models.hunyuan15_vae.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import hunyuan15
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import (
    diffusion_model_files,
    family_handle,
    fitted,
    no_single_file,
)

BYT5_PROBE = "encoder.block.0.layer.0.SelfAttention.q.weight"
BYT5_MAX_VOCAB = 4096  # byT5: 384 byte ids (Glyph-SDXL-v2 adds ~1,500 color and font tokens)


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A HunyuanVideo15Transformer3DModel from an original-layout file."""
    from diffusers import HunyuanVideo15Transformer3DModel

    from easel.models.hunyuan15_keys import transformer_to_diffusers
    from easel.models.qwen_loading import build_module

    def build() -> Any:
        config = hunyuan15.transformer_config(state)
        prefix = hunyuan15.prefix_of(state) or ""
        converted = transformer_to_diffusers(state, prefix)
        what = "HunyuanVideo 1.5 transformer"
        return build_module(HunyuanVideo15Transformer3DModel, config, converted, dtype, what)

    return fitted(path, "a HunyuanVideo 1.5 transformer", build)


def model_handle(name: str, module: Any, manager: Any, vae: VaeHandle | None = None) -> ModelHandle:
    return family_handle(hunyuan15.HUNYUAN15, name, module, manager, vae)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    hunyuan15.HUNYUAN15,
    hunyuan15.recognise,
    kind="hunyuan15",
    what="a HunyuanVideo 1.5 transformer",
    build=build_transformer,
)


# -- text encoders ------------------------------------------------------------------------------
def is_byt5(state: Mapping[str, Any]) -> bool:
    """Whether a text encoder file is a byT5 encoder (T5 keys, a byte-sized vocabulary)."""
    for key in ("shared.weight", "encoder.embed_tokens.weight"):
        if key in state and BYT5_PROBE in state:
            return int(state[key].shape[0]) <= BYT5_MAX_VOCAB
    return False


def byt5_encoder(path: Path, manager: Any) -> tuple[Any, Any]:
    """(T5EncoderModel, ByT5Tokenizer) of a byT5 file, loaded once."""
    from transformers import ByT5Tokenizer

    from easel.models.flux_loading import build_t5, hold
    from easel.models.transformer_files import read_weights

    key = str(path.resolve())

    def load() -> tuple[Any, Any]:
        state = read_weights(path, manager)
        if not is_byt5(state):
            raise ModelError(f"{path.name} is not a byT5 text encoder")
        model = fitted(path, "a byT5 text encoder", lambda: build_t5(state, "", manager.dtype))
        return model, ByT5Tokenizer()

    model, tokenizer = manager.load_module((key, "byt5"), load)
    hold(manager, key, {"text_encoder:byt5": model})
    return model, tokenizer


def hunyuan15_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """DualCLIPLoader type hunyuan_video_15: a Qwen2.5-VL file (ComfyUI's qwen_2.5_vl_7b*) and
    a byT5 file (byt5_small_glyphxl*), in either order."""
    from easel.models import family_files
    from easel.models.qwen_loading import is_qwen25_vl, qwen_clip

    qwen: TextEncoderPart | None = None
    byt5: TextEncoderPart | None = None
    for path in paths:
        keys = family_files.keys_of(path, manager)
        if is_qwen25_vl(keys):
            (qwen,) = qwen_clip(name, [path], manager).parts
        elif is_byt5(keys):
            model, tokenizer = byt5_encoder(path, manager)
            byt5 = TextEncoderPart("byt5", tokenizer, model, kind="byt5")
        else:
            raise ModelError(
                f"{path.name} is neither Qwen2.5-VL nor byT5: HunyuanVideo 1.5 takes "
                "qwen_2.5_vl_7b and byt5_small_glyphxl"
            )
    if qwen is None or byt5 is None:
        names = " and ".join(p.name for p in paths)
        raise ModelError(
            f"HunyuanVideo 1.5 needs a Qwen2.5-VL (qwen_2.5_vl_7b) and a byT5 "
            f"(byt5_small_glyphxl) text encoder; {names} are not one of each"
        )
    return ClipHandle(name, (qwen, byt5), manager, family=hunyuan15.HUNYUAN15)


# -- diffusers folders (family_files.CHECKPOINTS) ---------------------------------------------
# ComfyUI has no single-file HunyuanVideo 1.5 checkpoint layout: none is read as one.
is_checkpoint, single_file_checkpoint = no_single_file(
    "HunyuanVideo 1.5 comes as split files: DiffusionModelLoader, DualTextEncoderLoader type "
    "hunyuan_video_15 and VAELoader"
)


FOLDER_CLASSES = ("HunyuanVideo15Pipeline", "HunyuanVideo15ImageToVideoPipeline")


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a HunyuanVideo 1.5 pipeline's."""
    from easel.models import loading

    return loading.pipeline_class(folder) in FOLDER_CLASSES


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers HunyuanVideo15Pipeline folder: transformer/, text_encoder/ (Qwen2.5-VL's
    language model), tokenizer/, text_encoder_2/ (byT5), tokenizer_2/, vae/, scheduler/."""
    from easel.models import loading
    from easel.models.hunyuan15_vae import Hunyuan15Vae

    index = loading.model_index(folder)

    def part(sub: str, library: str, cls: str) -> Any:
        return manager.module(folder / sub, *index.get(sub, (library, cls)))

    transformer = part("transformer", "diffusers", "HunyuanVideo15Transformer3DModel")
    vae = manager.load_module(
        (str((folder / "vae").resolve()), "hunyuan15-vae"),
        lambda: Hunyuan15Vae(part("vae", "diffusers", "AutoencoderKLHunyuanVideo15")),
    )
    qwen = part("text_encoder", "transformers", "Qwen2_5_VLTextModel")
    byt5 = part("text_encoder_2", "transformers", "T5EncoderModel")
    tok = part("tokenizer", "transformers", "Qwen2Tokenizer")
    tok2 = part("tokenizer_2", "transformers", "ByT5Tokenizer")
    family = hunyuan15.HUNYUAN15
    sched = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    vae_handle = VaeHandle(name, vae, manager)
    model = ModelHandle(
        name, transformer, dict(sched), family.latent.factor, manager, vae=vae_handle, family=family
    )
    parts = (
        TextEncoderPart("qwen", tok, qwen, kind="qwen"),
        TextEncoderPart("byt5", tok2, byt5, kind="byt5"),
    )
    return model, ClipHandle(name, parts, manager, family=family), vae_handle
