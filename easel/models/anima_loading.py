"""Anima from ComfyUI's split files: the diffusion model (diffusion_models/anima-*.safetensors),
the text encoder (text_encoders/qwen_3_06b_base.safetensors, CLIPLoader type stable_diffusion)
and the Qwen-Image VAE (VAELoader, easel.models.qwen_vae).

- The diffusion model file holds Cosmos-Predict2's DiT in its original keys (`net.blocks.N...`,
  converted by diffusers' convert_cosmos_transformer_checkpoint_to_diffusers into
  CosmosTransformer3DModel's) and the LLM adapter (`llm_adapter.`), whose keys are already
  diffusers' AnimaTextConditioner's. Both are built from the one file; the adapter is held on
  the transformer as its `text_conditioner` submodule, so the model manager places,
  offloads and casts them together (ComfyUI runs the adapter as part of the model too).
- The text encoder is a Qwen3 (transformers' Qwen3Model, built by easel.models.lumina_loading's
  shape reader); its tokenizer is Qwen's (ComfyUI's qwen25_tokenizer), and Anima reads the
  prompt's T5 token ids too: the T5 tokenizer is found as Flux's is (easel.models.tokenizers).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import anima
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart
from easel.models.transformer_files import diffusion_model_files, family_handle, fitted

# the adapter's name on the transformer: diffusers' Anima LoRA keys name its layers so
ADAPTER_ATTRIBUTE = "text_conditioner"


def split_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(DiT keys in CosmosTransformer3DModel's names, adapter keys in AnimaTextConditioner's)
    of an Anima diffusion model in either layout."""
    from diffusers.loaders.single_file_utils import (
        convert_cosmos_transformer_checkpoint_to_diffusers,
    )

    found = anima.layout_of(state)
    if found is None:
        raise ModelError("no Anima diffusion model (Cosmos-Predict2 blocks with llm_adapter)")
    adapter = {k[len(found.adapter) :]: v for k, v in state.items() if k.startswith(found.adapter)}
    dit = {
        k[len(found.prefix) :]: v
        for k, v in state.items()
        if k.startswith(found.prefix) and not k.startswith(found.adapter)
    }
    if found.kind == "original":
        dit = convert_cosmos_transformer_checkpoint_to_diffusers(dit)
    return dit, adapter


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A CosmosTransformer3DModel carrying its AnimaTextConditioner, from an Anima file."""
    from diffusers import AnimaTextConditioner, CosmosTransformer3DModel

    from easel.models.qwen_loading import build_module

    def build() -> Any:
        config = anima.transformer_config(state)
        conditioner_config = anima.adapter_config(state)
        dit, adapter = split_state(state)
        transformer = build_module(
            CosmosTransformer3DModel, config, dit, dtype, "Anima (Cosmos) transformer"
        )
        conditioner = build_module(
            AnimaTextConditioner, conditioner_config, adapter, dtype, "Anima LLM adapter"
        )
        transformer.add_module(ADAPTER_ATTRIBUTE, conditioner)
        return transformer

    return fitted(path, "an Anima diffusion model", build)


def conditioner_of(transformer: Any) -> Any:
    """The LLM adapter an Anima transformer carries, or a ModelError."""
    conditioner = getattr(transformer, ADAPTER_ATTRIBUTE, None)
    if conditioner is None:
        raise ModelError("this Anima transformer carries no LLM adapter (llm_adapter.*)")
    return conditioner


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    anima.ANIMA,
    anima.recognise,
    kind="anima",
    what="an Anima diffusion model",
    build=build_transformer,
)


# -- the text encoder (Qwen3 0.6B) ---------------------------------------------------------------
class AnimaTokenizer:
    """Qwen's tokenizer (what the text encoder reads), carrying the T5 tokenizer whose ids the
    LLM adapter embeds as its queries (`t5`). Anything else is the Qwen tokenizer's."""

    def __init__(self, qwen: Any, t5: Any) -> None:
        self.qwen, self.t5 = qwen, t5

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.qwen(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("qwen", "t5"):
            raise AttributeError(name)
        return getattr(self.qwen, name)


def build_text_encoder(path: Path, manager: Any) -> tuple[Any, Any]:
    """(Qwen3Model, AnimaTokenizer) of a Qwen3 text encoder file."""
    from easel.models.lumina_loading import build_language_model, read_weights
    from easel.models.ovis_loading import qwen3_prefix
    from easel.models.qwen_tokenizer import qwen_tokenizer
    from easel.models.tokenizers import t5_tokenizer

    state = read_weights(path, manager)
    prefix = qwen3_prefix(state)
    if prefix is None:
        raise ModelError(
            f"{path.name} is not a Qwen3 language model ({summarise(state)}); Anima reads "
            "ComfyUI's qwen_3_06b_base file (model.layers.N.self_attn.q_norm ...)"
        )
    model = fitted(
        path,
        "a Qwen3 text encoder",
        lambda: build_language_model("qwen3", state, prefix, manager.dtype),
    )
    qwen = manager.load_module(
        ("qwen25-tokenizer", "qwen25"),
        lambda: qwen_tokenizer(checkpoint=path.name, roots=manager.roots),
    )
    t5 = manager.load_module(
        ("t5-tokenizer", "anima"),
        lambda: t5_tokenizer(checkpoint=path.name, contents="Anima", roots=manager.roots),
    )
    return model, AnimaTokenizer(qwen, t5)


def is_qwen3_file(path: Path, manager: Any) -> bool:
    """Whether a text encoder file holds a Qwen3 language model (read from its header)."""
    from easel.models.family_files import keys_of
    from easel.models.ovis_loading import qwen3_prefix

    try:
        return qwen3_prefix(keys_of(path, manager)) is not None
    except (OSError, ModelError, ValueError):
        return False


def anima_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """Anima's CLIP: one Qwen3 file (its tokenizer carrying the T5 tokenizer)."""
    (path,) = paths
    key = str(path.resolve())
    model, tokenizer = manager.load_module(
        (key, "anima-text-encoder"), lambda: build_text_encoder(path, manager)
    )
    hold(manager, key, {"text_encoder:qwen3": model})
    part = TextEncoderPart("qwen3", tokenizer, model, kind="qwen3")
    return ClipHandle(name, (part,), manager, family=anima.ANIMA)


def sd_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type stable_diffusion: a Qwen3 file is Anima's text encoder (as ComfyUI reads
    qwen_3_06b under this type), anything else a Stable Diffusion CLIP-L
    (easel.models.flux_loading.sd_clip)."""
    from easel.models.flux_loading import sd_clip as clip_l

    if len(paths) == 1 and is_qwen3_file(paths[0], manager):
        return anima_clip(name, paths, manager)
    return clip_l(name, paths, manager)


# -- diffusers folders (family_files.CHECKPOINTS) ---------------------------------------------
MODULAR_INDEX = "modular_model_index.json"


# ComfyUI's checkpoint layout (CheckpointSave of an Anima model): the diffusion model under
# `model.diffusion_model.`, the Qwen3 under `text_encoders.qwen3_06b.transformer.`, the VAE
# (Wan's keys) under `vae.`
CHECKPOINT_TEXT = "text_encoders.qwen3_06b.transformer."
CHECKPOINT_VAE = "vae."


def is_checkpoint(state: Mapping[str, Any]) -> bool:
    """Whether a file in checkpoints/ holds an Anima diffusion model (family_files): a whole
    ComfyUI checkpoint loads, a diffusion model alone is refused naming its loader."""
    return anima.recognise(state) is not None


def single_file_checkpoint(
    name: str, path: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, Any]:
    """An Anima checkpoint as ComfyUI saves one (see CHECKPOINT_TEXT, CHECKPOINT_VAE)."""
    from easel.models.handles import VaeHandle
    from easel.models.lumina_loading import build_language_model
    from easel.models.ovis_loading import qwen3_prefix
    from easel.models.qwen_tokenizer import qwen_tokenizer
    from easel.models.qwen_vae import load_qwen_vae
    from easel.models.tokenizers import t5_tokenizer
    from easel.models.transformer_files import read_weights

    def load() -> tuple[Any, Any, Any]:
        state = read_weights(path, manager)
        text = {
            k[len(CHECKPOINT_TEXT) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_TEXT)
        }
        vae = {
            k[len(CHECKPOINT_VAE) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_VAE)
        }
        prefix = qwen3_prefix(text)
        if prefix is None or not vae:
            raise ModelError(
                f"{path.name} holds an Anima diffusion model but no Qwen3 text encoder (under "
                f"{CHECKPOINT_TEXT}) or no VAE (under {CHECKPOINT_VAE}): put it in "
                "diffusion_models/ and load it with DiffusionModelLoader, TextEncoderLoader "
                "type stable_diffusion and VAELoader"
            )
        dit = {
            k: v for k, v in state.items() if not k.startswith((CHECKPOINT_TEXT, CHECKPOINT_VAE))
        }
        transformer = build_transformer(dit, manager.dtype, path)
        encoder = fitted(
            path,
            "a Qwen3 text encoder",
            lambda: build_language_model("qwen3", text, prefix, manager.dtype),
        )
        return transformer, encoder, load_qwen_vae(path, vae, manager.dtype)

    key = str(path.resolve())
    transformer, encoder, vae = manager.load_module((key, "anima-checkpoint"), load)
    hold(manager, key, {"unet": transformer, "text_encoder:qwen3": encoder, "vae": vae})
    tokenizer = AnimaTokenizer(
        manager.load_module(
            ("qwen25-tokenizer", "qwen25"),
            lambda: qwen_tokenizer(checkpoint=path.name, roots=manager.roots),
        ),
        manager.load_module(
            ("t5-tokenizer", "anima"),
            lambda: t5_tokenizer(checkpoint=path.name, contents="Anima", roots=manager.roots),
        ),
    )
    vae_handle = VaeHandle(name, vae, manager)
    model = family_handle(anima.ANIMA, name, transformer, manager, vae_handle)
    part = TextEncoderPart("qwen3", tokenizer, encoder, kind="qwen3")
    return model, ClipHandle(name, (part,), manager, family=anima.ANIMA), vae_handle


def _index(folder: Path) -> dict[str, Any]:
    from easel.models import loading

    for name in (MODULAR_INDEX, "model_index.json"):
        if (folder / name).is_file():
            return dict(loading.read_json(folder / name))
    return {}


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is Anima's (diffusers' AnimaModularPipeline, saved with its
    modular_model_index.json: transformer/, text_conditioner/, text_encoder/, tokenizer/,
    t5_tokenizer/, vae/, scheduler/)."""
    return str(_index(folder).get("_class_name", "")).startswith("Anima")


def folder_checkpoint(name: str, folder: Path, manager: Any) -> tuple[ModelHandle, ClipHandle, Any]:
    """An Anima diffusers folder: the transformer carrying its text conditioner, the Qwen3 text
    encoder with both tokenizers, the Qwen-Image VAE."""
    from easel.models import loading
    from easel.models.handles import VaeHandle
    from easel.models.qwen_vae import QwenVae

    def part(sub: str, library: str, cls: str) -> Any:
        if not (folder / sub).is_dir():
            raise ModelError(f"{folder.name} is an Anima folder without {sub}/")
        return manager.module(folder / sub, library, cls)

    transformer = part("transformer", "diffusers", "CosmosTransformer3DModel")
    conditioner = part("text_conditioner", "diffusers", "AnimaTextConditioner")
    if getattr(transformer, ADAPTER_ATTRIBUTE, None) is not conditioner:
        transformer.add_module(ADAPTER_ATTRIBUTE, conditioner)
    raw_vae = part("vae", "diffusers", "AutoencoderKLQwenImage")
    vae = manager.load_module((str(folder.resolve()), "qwen-vae"), lambda: QwenVae(raw_vae))
    text_encoder = part("text_encoder", "transformers", "Qwen3Model")
    tokenizer = AnimaTokenizer(
        part("tokenizer", "transformers", "Qwen2Tokenizer"),
        part("t5_tokenizer", "transformers", "T5TokenizerFast"),
    )
    family = anima.ANIMA
    scheduler = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    vae_handle = VaeHandle(name, vae, manager)
    model = family_handle(family, name, transformer, manager, vae_handle, scheduler)
    clip_part = TextEncoderPart("qwen3", tokenizer, text_encoder, kind="qwen3")
    return model, ClipHandle(name, (clip_part,), manager, family=family), vae_handle
