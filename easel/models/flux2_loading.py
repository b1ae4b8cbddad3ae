"""Flux.2 modules from ComfyUI's split files: the diffusion model (`diffusion_models/`,
flux2_dev*.safetensors, flux-2-klein*.safetensors) and, through CLIPLoader type `flux2`, its
text encoder (`text_encoders/`: a Mistral-Small-3.x file for dev, a Qwen3 file for Klein); the
VAE comes from VAELoader (easel.models.flux2_vae). Also ComfyUI's single files holding every
part and diffusers Flux.2 folders (CheckpointLoader).

Key conversion is diffusers' `convert_flux2_transformer_checkpoint_to_diffusers`; the config is
read off the tensor shapes (easel.models.families.flux2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import flux2
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import family_handle, fitted, load_transformer


def convert_transformer(state: Mapping[str, Any]) -> dict[str, Any]:
    """Original (BFL) keys -> diffusers Flux2Transformer2DModel keys, by diffusers' converter
    (it needs no width: Flux.2's single blocks keep their fused projection)."""
    from diffusers.loaders.single_file_utils import (
        convert_flux2_transformer_checkpoint_to_diffusers,
    )

    prefix = flux2.prefix_of(state)
    if prefix is None:
        raise ModelError("no Flux.2 transformer (double_stream_modulation_img) in the file")
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(convert_flux2_transformer_checkpoint_to_diffusers(sub))


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A Flux2Transformer2DModel from an original-layout state dict."""
    from diffusers import Flux2Transformer2DModel

    from easel.models.state_dicts import load_into

    def build() -> Any:
        config = flux2.transformer_config(state)
        converted = convert_transformer(dict(state))
        return load_into(Flux2Transformer2DModel, config, converted, dtype, "Flux.2 transformer")

    return fitted(path, "a Flux.2 transformer", build)


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are a Flux.2 transformer's (family_files)."""
    return flux2.recognise(state) is not None


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from a diffusion-model-only file (ComfyUI's UNETLoader)."""
    module = load_transformer(
        path,
        manager,
        weight_dtype,
        kind="flux2",
        what="a Flux.2 transformer",
        recognised=lambda state: flux2.recognise(state) is not None,
        build=build_transformer,
        hint=": Easel reads them in the original layout (double_blocks / single_blocks)",
    )
    return model_handle(name, module, manager, flux2.family_of(module.config))


def model_handle(
    name: str, module: Any, manager: Any, family: flux2.Flux2Family, vae: VaeHandle | None = None
) -> ModelHandle:
    return family_handle(family, name, module, manager, vae)


# -- text encoders (CLIPLoader type flux2) -----------------------------------------------------
def text_encoder(path: Path, manager: Any) -> tuple[str, Any, Any]:
    """One Flux.2 text encoder file, loaded once: (kind "mistral" or "qwen3", model,
    tokenizer)."""
    from easel.models import flux2_text_encoders as encoders
    from easel.models.transformer_files import read_weights

    key = str(path.resolve())

    def load() -> tuple[str, Any, Any]:
        state = read_weights(path, manager, TOKENIZER_KEYS)
        found = encoders.kind_of(state)
        if found is None:
            raise ModelError(
                f"{path.name} is not a text encoder Flux.2 takes ({summarise(state)}): "
                "type flux2 reads a Mistral-Small-3.x (dev) or a Qwen3 (Klein) language model "
                "(model.layers.*)"
            )
        kind, prefix = found

        def build() -> tuple[str, Any, Any]:
            tokenizer = encoders.tokenizer(kind, path, state, manager.roots)
            return kind, encoders.build(kind, state, prefix, manager.dtype), tokenizer

        return fitted(path, f"a {kind} text encoder", build)

    loaded = manager.load_module((key, "flux2-text-encoder"), load)
    hold(manager, key, {f"text_encoder:{loaded[0]}": loaded[1]})
    return loaded  # type: ignore[no-any-return]


def flux2_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type flux2: a Mistral-Small-3.x file makes a Flux.2 dev CLIP, a Qwen3 file a
    Flux.2 Klein one."""
    (path,) = paths
    kind, model, tokenizer = text_encoder(path, manager)
    return clip_of(name, kind, model, tokenizer, manager)


# -- single files holding every part (ComfyUI's checkpoint layout for Flux.2) ----------------
# Integer tensors in ComfyUI's Mistral files that are a tokenizer, not weights.
TOKENIZER_KEYS = ("tekken_model", "spiece_model")
CHECKPOINT_MODEL = "model.diffusion_model."
CHECKPOINT_VAE = "vae."
CHECKPOINT_TEXT = re.compile(r"^(text_encoders\.[^.]+\.transformer\.)")


def is_checkpoint(state: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's keys hold a Flux.2 transformer (easel.models.family_files)."""
    return flux2.prefix_of(state) == CHECKPOINT_MODEL


def text_encoder_root(state: Mapping[str, Any]) -> str | None:
    """Where the text encoder's keys start in a checkpoint (`text_encoders.<name>.transformer.`,
    as ComfyUI saves one), or None."""
    for key in state:
        found = CHECKPOINT_TEXT.match(key)
        if found and key.endswith("layers.0.self_attn.q_proj.weight"):
            return found.group(1)
    return None


def single_file_checkpoint(
    name: str, path: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A Flux.2 checkpoint as ComfyUI saves one: the transformer under
    `model.diffusion_model.`, the text encoder under `text_encoders.<name>.transformer.` (its
    tekken tokenizer, if any, beside it) and the VAE (original keys) under `vae.`."""
    from easel.models import flux2_text_encoders as encoders
    from easel.models.flux2_vae import load_flux2_vae
    from easel.models.transformer_files import read_weights

    def load() -> Any:
        state = read_weights(path, manager, TOKENIZER_KEYS)
        root = text_encoder_root(state)
        vae_state = {
            k[len(CHECKPOINT_VAE) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_VAE)
        }
        missing = [
            what for what, found in (("text encoder", root), ("VAE", vae_state)) if not found
        ]
        if root is None or not vae_state:
            raise ModelError(
                f"{path.name} holds a Flux.2 transformer but no {' or '.join(missing)} (looked "
                f"under text_encoders.<name>.transformer. and {CHECKPOINT_VAE}): put it in "
                "diffusion_models/ and load it with DiffusionModelLoader, TextEncoderLoader "
                "type flux2 and VAELoader"
            )
        transformer = build_transformer(state, manager.dtype, path)
        sub = {k[len(root) :]: v for k, v in state.items() if k.startswith(root)}
        found = encoders.kind_of(sub)
        if found is None:
            raise ModelError(f"{path.name}: the text encoder under {root} is no language model")
        kind, prefix = found
        try:
            tokenizer = encoders.tokenizer(kind, path, state, manager.roots)
            text = encoders.build(kind, sub, prefix, manager.dtype)
        except ModelError as exc:
            raise ModelError(f"{path.name}: {exc}") from None
        return transformer, (kind, text, tokenizer), load_flux2_vae(path, vae_state, manager.dtype)

    key = str(path.resolve())
    transformer, (kind, text, tokenizer), vae = manager.load_module((key, "flux2-checkpoint"), load)
    hold(manager, key, {"transformer": transformer, "vae": vae, f"text_encoder:{kind}": text})
    vae_handle = VaeHandle(name, vae, manager)
    model = model_handle(
        name, transformer, manager, flux2.family_of(transformer.config), vae_handle
    )
    return model, clip_of(name, kind, text, tokenizer, manager), vae_handle


def clip_of(name: str, kind: str, model: Any, tokenizer: Any, manager: Any) -> ClipHandle:
    """A Flux.2 CLIP: dev's with a Mistral encoder, Klein's with a Qwen3 one."""
    family = flux2.FLUX2_DEV if kind == "mistral" else flux2.FLUX2_KLEIN
    part = TextEncoderPart(kind, tokenizer, model, layer_norm=False, kind="llm")
    return ClipHandle(name, (part,), manager, family=family)


# -- diffusers folders (Flux2Pipeline, Flux2KleinPipeline) ------------------------------------
def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a Flux.2 pipeline's: its transformer is Flux.2's."""
    import json

    config = folder / "transformer" / "config.json"
    try:
        return bool(json.loads(config.read_text())["_class_name"] == "Flux2Transformer2DModel")
    except (OSError, ValueError, KeyError, TypeError):
        return False


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers Flux.2 folder (transformer/, text_encoder/, tokenizer/, vae/). The text
    encoder is the folder's class (Mistral3ForConditionalGeneration, Qwen3ForCausalLM, ...);
    a processor folder's tokenizer is read with AutoTokenizer. KSampler uses the same shift as
    for the split files."""
    from easel.models import loading
    from easel.models.flux2_vae import Flux2LatentVae

    index = loading.model_index(folder) if (folder / "model_index.json").is_file() else {}
    transformer = manager.module(
        folder / "transformer", *index.get("transformer", ("diffusers", "Flux2Transformer2DModel"))
    )
    autoencoder = manager.module(
        folder / "vae", *index.get("vae", ("diffusers", "AutoencoderKLFlux2"))
    )
    vae = manager.load_module(
        (str((folder / "vae").resolve()), "flux2-latent-vae"), lambda: Flux2LatentVae(autoencoder)
    )
    library, class_name = index.get(
        "text_encoder", ("transformers", "Mistral3ForConditionalGeneration")
    )
    text = manager.module(folder / "text_encoder", library, class_name)
    tokenizer_class = index.get("tokenizer", ("transformers", "AutoTokenizer"))[1]
    if not tokenizer_class.endswith(("Tokenizer", "TokenizerFast")):
        # Flux2Pipeline's PixtralProcessor (its tokenizer), transformers 5's TokenizersBackend
        tokenizer_class = "AutoTokenizer"
    tokenizer = manager.module(folder / "tokenizer", "transformers", tokenizer_class)
    kind = "qwen3" if "qwen" in class_name.lower() else "mistral"
    family = flux2.family_of(transformer.config)
    scheduler = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    scheduler["mu"] = family.scheduler_config["mu"]
    vae_handle = VaeHandle(name, vae, manager)
    model = model_handle(name, transformer, manager, family, vae_handle)
    model.scheduler_config = scheduler
    return model, clip_of(name, kind, text, tokenizer, manager), vae_handle
