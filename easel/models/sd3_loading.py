"""SD3 / 3.5 modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/), from a
single file holding them (ComfyUI's sd3.5_large.safetensors layout), and from a diffusers
StableDiffusion3Pipeline folder.

Key conversion is diffusers' `convert_sd3_transformer_checkpoint_to_diffusers`; the configs are
read off the tensor shapes (easel.models.families.sd3); text encoders are transformers'
CLIPTextModel (CLIP-L), CLIPTextModelWithProjection (CLIP-G) and T5EncoderModel, in the
transformers key layout ComfyUI's clip_l / clip_g / t5xxl files use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import sd3
from easel.models.families.recognise import summarise
from easel.models.flux_loading import (
    build_t5,
    text_encoder_kind,
)
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import family_handle, fitted, load_transformer

CLIP_FAMILY = sd3.SD35_LARGE  # the family a CLIP built here names (every SD3 encodes alike)


def convert_transformer(state: Mapping[str, Any]) -> dict[str, Any]:
    """Original (Stability) keys -> diffusers SD3Transformer2DModel keys, by diffusers'
    converter (handed a copy: it pops what it converts)."""
    from diffusers.loaders.single_file_utils import (
        convert_sd3_transformer_checkpoint_to_diffusers,
    )

    prefix = sd3.prefix_of(state)
    if prefix is None:
        raise ModelError("no SD3 transformer (joint_blocks) in the file")
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return convert_sd3_transformer_checkpoint_to_diffusers(sub)  # type: ignore[no-any-return]


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """An SD3Transformer2DModel from an original-layout state dict."""
    from diffusers import SD3Transformer2DModel

    from easel.models.state_dicts import load_into

    def build() -> Any:
        config = sd3.transformer_config(state)
        converted = convert_transformer(state)
        return load_into(SD3Transformer2DModel, config, converted, dtype, "SD3 transformer")

    return fitted(path, "an SD3 transformer", build)


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are an SD3 transformer's (family_files)."""
    return sd3.recognise(state) is not None


def model_handle(
    name: str, module: Any, manager: Any, family: sd3.SD3Family, vae: VaeHandle | None = None
) -> ModelHandle:
    return family_handle(family, name, module, manager, vae)


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from a diffusion-model-only file (ComfyUI's UNETLoader)."""
    module = load_transformer(
        path,
        manager,
        weight_dtype,
        kind="sd3",
        what="an SD3 transformer",
        recognised=lambda state: sd3.recognise(state) is not None,
        build=build_transformer,
        hint=": Easel reads them in the original layout (joint_blocks)",
    )
    return model_handle(name, module, manager, sd3.folder_family(module.config))


# -- text encoders ----------------------------------------------------------------------------
def build_clip_g(state: Mapping[str, Any], prefix: str, dtype: Any, tokens: dict[str, int]) -> Any:
    """CLIP-G (OpenCLIP bigG) with its projection, from transformers keys under `prefix`
    (`text_model.*`, `text_projection.weight`), as ComfyUI's clip_g files hold it."""
    import re

    from transformers import CLIPTextModelWithProjection

    from easel.models.single_file import clip_config
    from easel.models.state_dicts import load_into

    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if "text_projection.weight" not in sub:
        raise ModelError("the CLIP-G encoder has no text_projection.weight")
    sub = {
        (k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
        for k, v in sub.items()
    }
    p = "text_model."
    config = clip_config(
        sub,
        sd3.SD3_CLIP_G,
        token=p + "embeddings.token_embedding.weight",
        position=p + "embeddings.position_embedding.weight",
        layers=re.escape(p) + r"encoder\.layers\.(\d+)\.",
        fc1=re.escape(p) + r"encoder\.layers\.\d+\.mlp\.fc1\.weight",
        tokens=tokens,
        projection=int(sub["text_projection.weight"].shape[0]),
    )
    return load_into(CLIPTextModelWithProjection, config, sub, dtype, "CLIP-G text encoder")


def _clip_shape(state: Mapping[str, Any], prefix: str) -> tuple[int, int]:
    """(width, depth) of a CLIP text tower under `prefix`."""
    width = depth = 0
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :].removeprefix("text_model.")
        if rest == "embeddings.token_embedding.weight":
            width = int(value.shape[1])
        if rest.startswith("encoder.layers."):
            depth = max(depth, int(rest.split(".")[2]) + 1)
    return width, depth


def _tokenizer(kind: str, path: Path, manager: Any) -> Any:
    from easel.models import tokenizers

    if kind == "t5":
        return manager.load_module(
            ("t5-tokenizer", "t5"),
            lambda: tokenizers.t5_tokenizer(
                checkpoint=path.name, contents="T5 encoder weights", roots=manager.roots
            ),
        )
    return manager.clip_tokenizer(path, pad_token="!" if kind == "g" else "<|endoftext|>")


def build_encoder(
    kind: str, state: Mapping[str, Any], prefix: str, tokenizer: Any, dtype: Any, path: Path
) -> Any:
    """The text encoder `kind` ("l", "g" or "t5") under `prefix` in `state`."""
    from easel.models.single_file import build_clip_l, token_ids

    what = {"l": "CLIP-L", "g": "CLIP-G", "t5": "T5"}[kind]

    def build() -> Any:
        if kind == "t5":
            return build_t5(state, prefix, dtype)
        if kind == "g":
            return build_clip_g(state, prefix, dtype, token_ids(tokenizer))
        return build_clip_l(state, prefix, sd3.SD3_CLIP_L, dtype, token_ids(tokenizer))

    return fitted(path, f"a {what} text encoder", build)


def part(kind: str, tokenizer: Any, model: Any) -> TextEncoderPart:
    """The CLIP part of one SD3 text encoder (the family's layers and pooled outputs)."""
    if kind == "t5":
        return TextEncoderPart("t5", tokenizer, model, kind="t5")
    spec = sd3.SD3_CLIP_G if kind == "g" else sd3.SD3_CLIP_L
    return TextEncoderPart(
        kind, tokenizer, model, layer=spec.layer, layer_norm=spec.layer_norm, pooled=True
    )


def _kinds(paths: list[Path], manager: Any) -> list[tuple[str, str]]:
    """(kind, prefix) of each file: T5, or CLIP-L / CLIP-G. Of two CLIP files the wider (then
    the deeper) is CLIP-G (real files: 768 and 1280 wide, 12 and 32 layers)."""
    from easel.models.family_files import keys_of

    found: list[tuple[str, str, tuple[int, int]]] = []
    for path in paths:
        state = keys_of(path, manager)
        kind = text_encoder_kind(state)
        if kind is None:
            raise ModelError(
                f"{path.name} is not a text encoder Easel recognises ({summarise(state)}). "
                "SD3 takes CLIP-L, CLIP-G (text_model.*) and T5 (encoder.block.*) files in "
                "transformers' key layout"
            )
        shape = _clip_shape(state, kind[1]) if kind[0] == "clip_l" else (0, 0)
        found.append((kind[0], kind[1], shape))
    clips = [shape for kind, _, shape in found if kind == "clip_l"]
    t5s = sum(1 for kind, _, _ in found if kind == "t5")
    names = ", ".join(p.name for p in paths)
    if t5s > 1 or len(clips) not in ((0, 2) if t5s else (2,)):
        raise ModelError(
            f"SD3 takes CLIP-L, CLIP-G and T5 files (or CLIP-L and CLIP-G, or T5 alone); "
            f"{names} are {len(clips)} CLIP and {t5s} T5 encoder(s)"
        )
    if clips and clips[0] == clips[1]:
        raise ModelError(
            f"{names}: the two CLIP encoders have the same shape, so which is CLIP-G "
            "cannot be told (CLIP-G is the wider one)"
        )
    wide = max(clips) if clips else None
    return [
        ("t5" if kind == "t5" else "g" if shape == wide else "l", prefix)
        for kind, prefix, shape in found
    ]


def sd3_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIP (parts "l", "g", "t5") from ComfyUI's SD3 text encoder files, in any order:
    TripleCLIPLoader (clip_l, clip_g, t5xxl), DualCLIPLoader (clip_l, clip_g: no T5) or
    CLIPLoader (t5xxl alone), type sd3."""
    from easel.models.transformer_files import read_weights

    parts = []
    for path, (kind, prefix) in zip(paths, _kinds(paths, manager), strict=True):
        tokenizer = _tokenizer(kind, path, manager)

        def load(
            path: Path = path, kind: str = kind, prefix: str = prefix, tokenizer: Any = tokenizer
        ) -> Any:
            state = read_weights(path, manager)
            return build_encoder(kind, state, prefix, tokenizer, manager.dtype, path)

        model = manager.load_module((str(path.resolve()), f"sd3-text-encoder:{kind}"), load)
        parts.append(part(kind, tokenizer, model))
    order = {"l": 0, "g": 1, "t5": 2}
    parts.sort(key=lambda p: order[p.key])
    return ClipHandle(name, tuple(parts), manager, family=CLIP_FAMILY)


# -- single files holding every part (ComfyUI's sd3.5_*.safetensors layout) -----------------
CHECKPOINT_TRANSFORMER = "model.diffusion_model."
CHECKPOINT_TEXT = {
    "l": "text_encoders.clip_l.transformer.",
    "g": "text_encoders.clip_g.transformer.",
    "t5": "text_encoders.t5xxl.transformer.",
}
CHECKPOINT_VAE = "first_stage_model."


def is_checkpoint(state: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's keys hold an SD3 transformer (easel.models.family_files)."""
    return CHECKPOINT_TRANSFORMER + "joint_blocks.0.x_block.attn.qkv.weight" in state


def load_vae(path: Path, state: Mapping[str, Any], dtype: Any) -> Any:
    """The 16-channel VAE of a file, scaled as SD3's latents are."""
    from easel.models.vae_files import load_vae_file

    return load_vae_file(path, dict(state), dtype, sd3.SD3_LATENT)


def single_file_checkpoint(
    name: str, path: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """An SD3 checkpoint as ComfyUI users keep them: the transformer under
    `model.diffusion_model.`, the VAE (original keys) under `first_stage_model.`, and the text
    encoders under `text_encoders.clip_l/clip_g/t5xxl.transformer.`. Text encoders the file
    lacks are left out: without T5 the model runs on the two CLIPs (as the pipeline without
    text_encoder_3); with none, prompts need TripleTextEncoderLoader."""
    from easel.models.transformer_files import read_weights

    def load() -> Any:
        state = read_weights(path, manager)
        if not any(k.startswith(CHECKPOINT_VAE) for k in state):
            raise ModelError(
                f"{path.name} holds an SD3 transformer but no VAE (looked under "
                f"{CHECKPOINT_VAE}): put it in diffusion_models/ and load it with "
                "DiffusionModelLoader, TripleTextEncoderLoader and VAELoader"
            )
        transformer = build_transformer(state, manager.dtype, path)
        present = [
            kind
            for kind, prefix in CHECKPOINT_TEXT.items()
            if any(k.startswith(prefix) for k in state)
        ]
        if ("l" in present) != ("g" in present):
            present = [kind for kind in present if kind == "t5"]  # one CLIP alone is unusable
        encoders = []
        for kind in present:
            tokenizer = _tokenizer(kind, path, manager)
            prefix = CHECKPOINT_TEXT[kind]
            model = build_encoder(kind, state, prefix, tokenizer, manager.dtype, path)
            encoders.append((kind, model, tokenizer))
        vae_state = {
            k[len(CHECKPOINT_VAE) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_VAE)
        }
        return transformer, encoders, load_vae(path, vae_state, manager.dtype)

    from easel.models.flux_loading import hold

    key = str(path.resolve())
    transformer, encoders, vae = manager.load_module((key, "sd3-checkpoint"), load)
    hold(
        manager,
        key,
        {
            "transformer": transformer,
            "vae": vae,
            **{f"text_encoder:{kind}": model for kind, model, _ in encoders},
        },
    )
    family = sd3.folder_family(transformer.config)
    vae_handle = VaeHandle(name, vae, manager)
    model = model_handle(name, transformer, manager, family, vae_handle)
    parts = tuple(part(kind, tokenizer, model) for kind, model, tokenizer in encoders)
    return model, ClipHandle(name, parts, manager, family=family), vae_handle


# -- diffusers folders ------------------------------------------------------------------------
PIPELINE_CLASSES = ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline")


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a StableDiffusion3Pipeline's (easel.models.family_files)."""
    from easel.models import loading

    if not (folder / "transformer").is_dir():
        return False
    for config in (folder / "model_index.json", folder / "transformer" / "config.json"):
        if config.is_file():
            name = str(loading.read_json(config).get("_class_name", ""))
            if name in PIPELINE_CLASSES or name == "SD3Transformer2DModel":
                return True
    return False


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers StableDiffusion3Pipeline folder (transformer/, vae/, text_encoder/,
    text_encoder_2/, and text_encoder_3/ when it has T5). Its CLIPs are
    CLIPTextModelWithProjection, so both pooled outputs are projected, as the pipeline uses
    them."""
    from easel.models import loading

    index = loading.model_index(folder) if (folder / "model_index.json").is_file() else {}

    def module(sub: str, default: tuple[str, str]) -> Any:
        return manager.module(folder / sub, *index.get(sub, default))

    transformer = module("transformer", ("diffusers", "SD3Transformer2DModel"))
    vae = module("vae", ("diffusers", "AutoencoderKL"))
    clip_model = ("transformers", "CLIPTextModelWithProjection")
    clip_tok = ("transformers", "CLIPTokenizer")
    parts = [
        part("l", module("tokenizer", clip_tok), module("text_encoder", clip_model)),
        part("g", module("tokenizer_2", clip_tok), module("text_encoder_2", clip_model)),
    ]
    indexed = (folder / "model_index.json").is_file()
    if (folder / "text_encoder_3").is_dir() and (not indexed or "text_encoder_3" in index):
        t5 = module("text_encoder_3", ("transformers", "T5EncoderModel"))
        t5_tok = module("tokenizer_3", ("transformers", "T5TokenizerFast"))
        parts.append(part("t5", t5_tok, t5))
    family = sd3.folder_family(transformer.config)
    sched = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    vae_handle = VaeHandle(name, vae, manager)
    model = ModelHandle(
        name,
        transformer,
        dict(sched),
        vae_handle.scale_factor,
        manager,
        vae=vae_handle,
        family=family,
    )
    return model, ClipHandle(name, tuple(parts), manager, family=family), vae_handle
