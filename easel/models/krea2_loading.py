"""Krea 2 modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/) and from
diffusers Krea2Pipeline folders.

- The transformer: diffusers' `convert_krea2_transformer_checkpoint_to_diffusers` on the
  original keys, its config read off the shapes (easel.models.families.krea2).
- The text encoder (CLIPLoader type `krea2`): Qwen3-VL-4B's language model, as ComfyUI's
  `qwen3vl_4b` file holds it (`model.layers.N`, `model.embed_tokens`, `model.norm`, and the
  vision tower `visual.*`, which text-to-image does not use and is not read), or in the Hugging
  Face layout (`model.language_model.*`). It becomes transformers' Qwen3VLTextModel, its config
  read off the shapes; Qwen3-VL's rope base (5e6) is not in the file and is Qwen3-VL-4B's.
- The VAE is the Qwen-Image VAE (VAELoader reads it as for Qwen-Image).

Quantised files (ComfyUI's `*_int8*`) are dequantised through comfy-kitchen, as for Z-Image
(easel.models.lumina_loading.read_weights); scaled fp8 files are multiplied out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import krea2
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.lumina_loading import read_weights
from easel.models.transformer_files import (
    diffusion_model_files,
    family_handle,
    fitted,
    no_single_file,
    unprefixed,
)

KIND = "qwen3vl"
ROPE_THETA = 5_000_000.0  # Qwen3-VL-4B's text config (not in the weights)


# -- the transformer ----------------------------------------------------------------------------
def convert_transformer(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(diffusers config, diffusers state dict) of an original-layout Krea 2 transformer."""
    from diffusers.loaders.single_file_utils import (
        convert_krea2_transformer_checkpoint_to_diffusers,
    )

    missing = "no Krea 2 transformer (txtfusion, blocks) in the file"
    sub = unprefixed(state, krea2.prefix_of(state), missing)
    config = krea2.transformer_config(state)
    return config, convert_krea2_transformer_checkpoint_to_diffusers(sub)


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A Krea2Transformer2DModel from an original-layout file."""
    from diffusers import Krea2Transformer2DModel

    from easel.models.state_dicts import load_into

    def build() -> Any:
        config, converted = convert_transformer(dict(state))
        return load_into(Krea2Transformer2DModel, config, converted, dtype, "Krea 2 transformer")

    return fitted(path, "a Krea 2 transformer", build)


def model_handle(
    name: str,
    module: Any,
    manager: Any,
    vae: VaeHandle | None = None,
    scheduler_config: Mapping[str, Any] | None = None,
) -> ModelHandle:
    return family_handle(krea2.KREA2, name, module, manager, vae, scheduler_config)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    krea2.KREA2,
    krea2.recognise,
    kind="krea2",
    what="a Krea 2 transformer",
    build=build_transformer,
    read=read_weights,
)


# -- the text encoder: Qwen3-VL's language model ------------------------------------------------
TEXT_PREFIXES = ("model.language_model.", "model.", "language_model.", "")


def text_prefix(state: Mapping[str, Any]) -> str | None:
    """Where a Qwen3(-VL) language model's keys start (its per-head q norm tells Qwen3)."""
    for prefix in TEXT_PREFIXES:
        if prefix + "layers.0.self_attn.q_norm.weight" in state and (
            prefix + "embed_tokens.weight" in state
        ):
            return prefix
    return None


def mrope_section(head_dim: int) -> list[int]:
    """Qwen3-VL's (t, h, w) rope split, [24, 20, 20] for heads of 128, scaled for others. Text
    tokens have one position on all three axes, so the split does not change their encoding."""
    side = head_dim * 20 // 128
    return [head_dim // 2 - 2 * side, side, side]


def build_language_model(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """transformers' Qwen3VLTextModel with its config read off the shapes."""
    import torch
    from transformers import Qwen3VLTextConfig, Qwen3VLTextModel

    sub = {
        k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and not k.startswith(("lm_head", "visual.", prefix + "visual."))
    }
    if prefix == "":
        sub = {k: v for k, v in sub.items() if not k.startswith(("visual.", "lm_head."))}
    vocab, hidden = (int(n) for n in sub["embed_tokens.weight"].shape)
    head_dim = int(sub["layers.0.self_attn.q_norm.weight"].shape[0])
    q_rows = int(sub["layers.0.self_attn.q_proj.weight"].shape[0])
    kv_rows = int(sub["layers.0.self_attn.k_proj.weight"].shape[0])
    if q_rows % head_dim or kv_rows % head_dim:
        raise ModelError(f"attention widths {q_rows} / {kv_rows} are not heads of {head_dim}")
    config = Qwen3VLTextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(sub["layers.0.mlp.gate_proj.weight"].shape[0]),
        num_hidden_layers=krea2.count(sub, "layers."),
        num_attention_heads=q_rows // head_dim,
        num_key_value_heads=kv_rows // head_dim,
        head_dim=head_dim,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": ROPE_THETA,
            "mrope_section": mrope_section(head_dim),
            "mrope_interleaved": True,
        },
        rms_norm_eps=1e-6,
    )
    with torch.device("meta"):
        model = Qwen3VLTextModel(config)
    model.rotary_emb = type(model.rotary_emb)(config=model.config)
    state_cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sub.items()}
    result = model.load_state_dict(state_cast, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"the Qwen3-VL text encoder's weights do not match its shape: "
            f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})"
        )
    meta = [name for name, buffer in model.named_buffers() if buffer.is_meta]
    if meta:
        raise ModelError(f"the Qwen3-VL text encoder has no value for {', '.join(meta)}")
    layers = int(config.num_hidden_layers)
    if layers < max(krea2.TAP_LAYERS):
        raise ModelError(
            f"a Qwen3-VL text encoder of {layers} layers: Krea 2 reads hidden states "
            f"{list(krea2.TAP_LAYERS)} (Qwen3-VL-4B's 36 layers)"
        )
    from easel.models.text_generation import file_lm_head, keep_lm_head

    head = file_lm_head(state, prefix)
    if head is not None:  # TextGenerate's head (Krea 2's encoding never reads it)
        keep_lm_head(model, head.to(dtype))
    else:  # Qwen3-VL-4B ties its head to the embedding, so its files hold none
        model.config.tie_word_embeddings = True
    return model.eval().requires_grad_(False)


def qwen3_text_prefix(path: Path, state: Mapping[str, Any], clip_type: str, takes: str) -> str:
    """The key prefix of a Qwen3-VL language model in `state`, else a ModelError saying what
    the `clip_type` type takes (`takes`: "Qwen3-VL-4B (qwen3vl_4b)")."""
    prefix = text_prefix(state)
    if prefix is None:
        raise ModelError(
            f"{path.name} is not a text encoder the {clip_type} type takes ({summarise(state)}): "
            f"it takes {takes} files (model.layers.N.self_attn.q_norm ...)"
        )
    return prefix


def qwen3_text_encoder(
    path: Path, state: Mapping[str, Any], prefix: str, manager: Any
) -> tuple[Any, Any]:
    """(model, tokenizer): the Qwen3-VL language model under `prefix` and the Qwen3
    tokenizer (Krea 2, Ideogram 4 and MiniMax H3 files)."""
    from easel.models import lumina_tokenizers

    model = fitted(
        path,
        "a Qwen3-VL text encoder",
        lambda: build_language_model(state, prefix, manager.dtype),
    )
    tokenizer = manager.load_module(
        ("qwen3-tokenizer", "qwen3"),
        lambda: lumina_tokenizers.tokenizer("qwen3", checkpoint=path.name, roots=manager.roots),
    )
    return model, tokenizer


def build_text_encoder(path: Path, state: Mapping[str, Any], manager: Any) -> tuple[Any, Any]:
    """(model, tokenizer) of a Qwen3-VL text encoder file."""
    prefix = qwen3_text_prefix(path, state, "krea2", "Qwen3-VL-4B (qwen3vl_4b)")
    return qwen3_text_encoder(path, state, prefix, manager)


def text_encoder(path: Path, manager: Any) -> tuple[Any, Any]:
    """One text encoder file, loaded once: (model, tokenizer)."""
    key = str(path.resolve())
    loaded = manager.load_module(
        (key, "krea2-text-encoder"),
        lambda: build_text_encoder(path, read_weights(path, manager), manager),
    )
    hold(manager, key, {f"text_encoder:{KIND}": loaded[0]})
    return loaded  # type: ignore[no-any-return]


def clip_part(model: Any, tokenizer: Any) -> TextEncoderPart:
    spec = krea2.QWEN3VL
    return TextEncoderPart(spec.key, tokenizer, model, layer=-1, layer_norm=False, kind=KIND)


def krea2_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type krea2: a Qwen3-VL-4B file."""
    (path,) = paths
    model, tokenizer = text_encoder(path, manager)
    return ClipHandle(name, (clip_part(model, tokenizer),), manager, family=krea2.KREA2)


# -- diffusers folders (Krea2Pipeline) ----------------------------------------------------------
def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a Krea2Pipeline's."""
    from easel.models import loading

    return loading.pipeline_class(folder) == "Krea2Pipeline"


# Krea 2 ships no single file holding every part: ComfyUI loads its split files.
is_checkpoint, single_file_checkpoint = no_single_file(
    "Krea 2 has no single-file checkpoint; load its split files with DiffusionModelLoader, "
    "TextEncoderLoader type krea2 and VAELoader"
)


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers Krea2Pipeline folder: transformer/, text_encoder/ (Qwen3VLModel, whose
    language model is used), tokenizer/, vae/ (AutoencoderKLQwenImage), scheduler/. The
    scheduler follows Krea2Pipeline: the fixed mu 1.15 where the folder says `is_distilled`,
    else a mu that follows the image size (the pipeline's default)."""
    from easel.models import loading
    from easel.models.qwen_vae import QwenVae

    if not is_folder(folder):
        raise ModelError(f"{folder.name} is not a Krea2Pipeline folder")
    index = loading.model_index(folder)
    transformer = manager.module(
        folder / "transformer", *index.get("transformer", ("diffusers", "Krea2Transformer2DModel"))
    )
    raw_vae = manager.module(
        folder / "vae", *index.get("vae", ("diffusers", "AutoencoderKLQwenImage"))
    )
    encoder = manager.module(
        folder / "text_encoder", *index.get("text_encoder", ("transformers", "Qwen3VLModel"))
    )
    # AutoTokenizer whatever class the index names (transformers 5 saves "TokenizersBackend")
    tokenizer = manager.module(folder / "tokenizer", "transformers", "AutoTokenizer")
    language = getattr(encoder, "language_model", encoder)
    vae = manager.load_module((str(folder.resolve()), "krea2-vae"), lambda: QwenVae(raw_vae))
    sched = dict(loading.scheduler_config(folder / "scheduler") or krea2.SCHEDULER)
    distilled = bool(loading.read_json(folder / "model_index.json").get("is_distilled", False))
    sched.pop("mu", None)
    if distilled:
        sched["mu"] = krea2.SCHEDULER["mu"]
    vae_handle = VaeHandle(name, vae, manager)
    model = model_handle(name, transformer, manager, vae_handle, sched)
    clip = ClipHandle(name, (clip_part(language, tokenizer),), manager, family=krea2.KREA2)
    return model, clip, vae_handle
