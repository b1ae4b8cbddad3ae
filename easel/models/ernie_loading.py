"""ERNIE-Image modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/) and
from diffusers ErnieImagePipeline folders.

- The transformer: ComfyUI's file holds diffusers' own keys (diffusers'
  `convert_ernie_image_transformer_checkpoint_to_diffusers` only drops the
  `model.diffusion_model.` prefix); its config is read off the shapes
  (easel.models.families.ernie).
- The text encoder comes through CLIPLoader type `flux2`, as in ComfyUI's templates: ComfyUI
  takes a Mistral-architecture file of width 3072 as Ministral-3-3B (ERNIE-Image's encoder)
  whatever the type says, and so does Easel (`flux2_clip` below; other files go to Flux.2's
  loader). It becomes transformers' MistralModel read off the shapes, with ComfyUI's
  Ministral-3-3B settings (heads of 128, rope theta 1e6, RMS epsilon 1e-5, no rope scaling);
  its tokenizer is the tekken tokenizer ComfyUI stores in the file, or a Mistral tokenizer
  folder (found as Flux.2's, easel.models.flux2_text_encoders).
- The VAE is the Flux.2 VAE (VAELoader reads it as for Flux.2).

ComfyUI's quantised files (`*_int8*`, ...) are dequantised through comfy-kitchen
(easel.models.quantized_files); scaled fp8 weights are multiplied out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models import transformer_files
from easel.models.errors import ModelError
from easel.models.families import ernie
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import (
    diffusion_model_files,
    family_handle,
    fitted,
    no_single_file,
)

KIND = "ministral3"
TEKKEN_KEYS = ("tekken_model", "spiece_model")
# ComfyUI's Ministral-3-3B settings (what shapes cannot say)
MINISTRAL_HEAD_DIM = 128
MINISTRAL_ROPE_THETA = 1e6
MINISTRAL_RMS_EPS = 1e-5


def read_weights(path: Path, manager: Any) -> dict[str, Any]:
    """The file's weights (easel.models.transformer_files.read_weights); its tekken tokenizer,
    stored as bytes, is not a quantised weight."""
    return transformer_files.read_weights(path, manager, TEKKEN_KEYS)


# -- the transformer ----------------------------------------------------------------------------
def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """An ErnieImageTransformer2DModel from a file in ComfyUI's layout."""
    from diffusers import ErnieImageTransformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_ernie_image_transformer_checkpoint_to_diffusers,
    )

    from easel.models.state_dicts import load_into

    def build() -> Any:
        config = ernie.transformer_config(state)
        prefix = ernie.prefix_of(state) or ""
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        converted = convert_ernie_image_transformer_checkpoint_to_diffusers(sub)
        return load_into(
            ErnieImageTransformer2DModel, config, converted, dtype, "ERNIE-Image transformer"
        )

    return fitted(path, "an ERNIE-Image transformer", build)


def model_handle(
    name: str,
    module: Any,
    manager: Any,
    vae: VaeHandle | None = None,
    scheduler_config: Mapping[str, Any] | None = None,
) -> ModelHandle:
    return family_handle(ernie.ERNIE_IMAGE, name, module, manager, vae, scheduler_config)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    ernie.ERNIE_IMAGE,
    ernie.recognise,
    kind="ernie",
    what="an ERNIE-Image transformer",
    build=build_transformer,
    read=read_weights,
)


# -- the text encoder: Ministral-3-3B -----------------------------------------------------------
def ministral_prefix(state: Mapping[str, Any]) -> str | None:
    """Where a Ministral-3-3B language model's keys start in `state` (a Mistral-architecture
    decoder, no query norm, of width 3072: ComfyUI's test), or None."""
    from easel.models import flux2_text_encoders as encoders

    found = encoders.kind_of(state)
    if found is None or found[0] != "mistral":
        return None
    embed = state.get(found[1] + "embed_tokens.weight")
    if embed is None or int(embed.shape[1]) != ernie.MINISTRAL_WIDTH:
        return None
    return found[1]


def build_language_model(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """transformers' MistralModel with Ministral-3-3B's settings, read off the shapes."""
    import torch
    from transformers import MistralConfig, MistralModel

    def shape(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in state[prefix + key].shape)

    head = MINISTRAL_HEAD_DIM
    vocab, hidden = shape("embed_tokens.weight")
    queries, keys = (
        shape("layers.0.self_attn.q_proj.weight")[0],
        shape("layers.0.self_attn.k_proj.weight")[0],
    )
    if queries % head or keys % head:
        raise ModelError(f"attention widths {queries}, {keys} do not split into heads of {head}")
    config = MistralConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=shape("layers.0.mlp.gate_proj.weight")[0],
        num_hidden_layers=ernie.count(state, prefix + "layers."),
        num_attention_heads=queries // head,
        num_key_value_heads=keys // head,
        head_dim=head,
        rope_parameters={"rope_type": "default", "rope_theta": MINISTRAL_ROPE_THETA},
        rms_norm_eps=MINISTRAL_RMS_EPS,
        max_position_embeddings=262144,
        sliding_window=None,
        tie_word_embeddings=False,
    )
    sub = {
        k[len(prefix) :]: v.to(dtype) if v.is_floating_point() else v
        for k, v in state.items()
        if k.startswith(prefix)
    }
    sub = {k: v for k, v in sub.items() if k.split(".")[0] in ("embed_tokens", "layers", "norm")}
    with torch.device("meta"):
        model = MistralModel(config)
    result = model.load_state_dict(sub, strict=False, assign=True)
    missing = [k for k in result.missing_keys if "rotary_emb" not in k]
    if missing:
        raise ModelError(
            f"the Ministral-3-3B weights do not match its shape: {len(missing)} missing "
            f"(e.g. {missing[:3]})"
        )
    model.rotary_emb = type(model.rotary_emb)(config=config)
    return model.to(dtype).eval().requires_grad_(False)


def build_text_encoder(path: Path, state: Mapping[str, Any], manager: Any) -> tuple[Any, Any]:
    """(model, tokenizer) of a Ministral-3-3B file."""
    from easel.models import flux2_text_encoders as encoders

    prefix = ministral_prefix(state)
    if prefix is None:
        raise ModelError(
            f"{path.name} is not Ministral-3-3B ({summarise(state)}): ERNIE-Image reads a "
            f"Mistral-architecture language model of width {ernie.MINISTRAL_WIDTH}"
        )

    def build() -> tuple[Any, Any]:
        tokenizer = encoders.tokenizer("mistral", path, state, manager.roots)
        return tokenizer, build_language_model(state, prefix, manager.dtype)

    tokenizer, model = fitted(path, "Ministral-3-3B", build)
    tokenizer.padding_side = "right"
    return model, tokenizer


def text_encoder(path: Path, manager: Any) -> tuple[Any, Any]:
    """One Ministral-3-3B file, loaded once: (model, tokenizer)."""
    key = str(path.resolve())
    loaded = manager.load_module(
        (key, "ernie-text-encoder"),
        lambda: build_text_encoder(path, read_weights(path, manager), manager),
    )
    hold(manager, key, {f"text_encoder:{KIND}": loaded[0]})
    return loaded  # type: ignore[no-any-return]


def clip_part(model: Any, tokenizer: Any) -> TextEncoderPart:
    spec = ernie.MINISTRAL
    return TextEncoderPart(
        spec.key, tokenizer, model, layer=spec.layer, layer_norm=False, kind=KIND
    )


def ernie_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """An ERNIE-Image CLIP from a Ministral-3-3B file."""
    (path,) = paths
    model, tokenizer = text_encoder(path, manager)
    return ClipHandle(name, (clip_part(model, tokenizer),), manager, family=ernie.ERNIE_IMAGE)


def flux2_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type flux2, as ComfyUI reads it: a Ministral-3-3B file (a Mistral of width
    3072) makes an ERNIE-Image CLIP, any other file a Flux.2 one (easel.models.flux2_loading)."""
    from easel.models import flux2_loading
    from easel.models.family_files import keys_of

    if len(paths) == 1 and ministral_prefix(keys_of(paths[0], manager)) is not None:
        return ernie_clip(name, paths, manager)
    return flux2_loading.flux2_clip(name, paths, manager)


# -- diffusers folders (ErnieImagePipeline) -----------------------------------------------------
def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is an ErnieImagePipeline's."""
    from easel.models import loading

    return loading.pipeline_class(folder) == "ErnieImagePipeline"


# ERNIE-Image ships no single file holding every part: ComfyUI loads its split files.
is_checkpoint, single_file_checkpoint = no_single_file(
    "ERNIE-Image has no single-file checkpoint; load its split files with DiffusionModelLoader, "
    "TextEncoderLoader type flux2 and VAELoader"
)


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers ErnieImagePipeline folder: transformer/, text_encoder/ (Mistral3Model,
    whose language model is used), tokenizer/, vae/ (AutoencoderKLFlux2), scheduler/. The
    prompt enhancer (pe/) is not loaded."""
    from easel.models import loading
    from easel.models.flux2_vae import Flux2LatentVae

    if not is_folder(folder):
        raise ModelError(f"{folder.name} is not an ErnieImagePipeline folder")
    index = loading.model_index(folder)
    transformer = manager.module(
        folder / "transformer",
        *index.get("transformer", ("diffusers", "ErnieImageTransformer2DModel")),
    )
    autoencoder = manager.module(
        folder / "vae", *index.get("vae", ("diffusers", "AutoencoderKLFlux2"))
    )
    encoder = manager.module(
        folder / "text_encoder", *index.get("text_encoder", ("transformers", "Mistral3Model"))
    )
    # AutoTokenizer whatever class the index names (transformers 5 saves "TokenizersBackend")
    tokenizer = manager.module(folder / "tokenizer", "transformers", "AutoTokenizer")
    language = getattr(encoder, "language_model", encoder)
    vae = manager.load_module(
        (str((folder / "vae").resolve()), "flux2-latent-vae"), lambda: Flux2LatentVae(autoencoder)
    )
    sched = loading.scheduler_config(folder / "scheduler") or dict(ernie.SCHEDULER)
    vae_handle = VaeHandle(name, vae, manager)
    model = model_handle(name, transformer, manager, vae_handle, sched)
    clip = ClipHandle(name, (clip_part(language, tokenizer),), manager, family=ernie.ERNIE_IMAGE)
    return model, clip, vae_handle
