"""Z-Image and Lumina 2 modules from ComfyUI's split files (diffusion_models/, text_encoders/,
vae/), from single files holding every part (ComfyUI's all-in-one layout) and from diffusers
folders (ZImagePipeline, Lumina2Pipeline).

Key conversion is diffusers' `convert_z_image_transformer_checkpoint_to_diffusers` and
`convert_lumina2_to_diffusers`; configs are read off the tensor shapes
(easel.models.families.lumina). Text encoders are transformers' Qwen3Model (Z-Image) and
Gemma2Model (Lumina 2), configs read off the shapes; ComfyUI's CLIPLoader type `lumina2` takes
either, told apart by their keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import lumina
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold, storage_dtype, stored_as
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle


# -- reading files ------------------------------------------------------------------------------
def read_weights(path: Path, manager: Any) -> dict[str, Any]:
    """The file's weights (easel.models.transformer_files.read_weights); a SentencePiece model
    stored as bytes is not a quantised weight."""
    from easel.models.transformer_files import read_weights as read

    return read(path, manager, ("spiece_model",))


# -- the transformer ----------------------------------------------------------------------------
def _split_qkv(sub: dict[str, Any], config: Mapping[str, Any], zimage: bool) -> None:
    """Each fused `attention.qkv.weight` split into q, k and v at this model's head counts.
    diffusers' Lumina 2 converter splits at Lumina-Image-2.0's sizes (2304, 768, 768) only, so
    every other size (the tests' tiny models, pruned variants) is split here first; the
    converters map the pieces' names as they map their own."""
    import torch

    if zimage:
        dim, heads, kv = config["dim"], config["n_heads"], config["n_kv_heads"]
    else:
        dim = config["hidden_size"]
        heads, kv = config["num_attention_heads"], config["num_kv_heads"]
    head_dim = dim // heads
    sizes = [heads * head_dim, kv * head_dim, kv * head_dim]
    for key in [k for k in sub if k.endswith(".attention.qkv.weight")]:
        q, k, v = torch.split(sub.pop(key), sizes)
        stem = key[: -len("qkv.weight")]
        sub[stem + "to_q.weight"], sub[stem + "to_k.weight"], sub[stem + "to_v.weight"] = q, k, v


def convert_transformer(state: Mapping[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(family, diffusers config, diffusers state dict) of an original-layout transformer."""
    from diffusers.loaders.single_file_utils import (
        convert_lumina2_to_diffusers,
        convert_z_image_transformer_checkpoint_to_diffusers,
    )

    found = lumina.recognise(state)
    prefix = lumina.prefix_of(state)
    if found is None or prefix is None:
        raise ModelError("no Z-Image or Lumina 2 transformer (cap_embedder, layers) in the file")
    family = found[0]
    zimage = family is lumina.ZIMAGE
    config = lumina.zimage_config(state) if zimage else lumina.lumina2_config(state)
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    _split_qkv(sub, config, zimage)
    if zimage:
        return family, config, convert_z_image_transformer_checkpoint_to_diffusers(sub)
    return family, config, convert_lumina2_to_diffusers(sub)


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A ZImageTransformer2DModel or Lumina2Transformer2DModel from an original-layout file."""
    from diffusers import Lumina2Transformer2DModel, ZImageTransformer2DModel

    from easel.models.state_dicts import load_into

    try:
        family, config, converted = convert_transformer(dict(state))
        cls = ZImageTransformer2DModel if family is lumina.ZIMAGE else Lumina2Transformer2DModel
        module = load_into(cls, config, converted, dtype, f"{family.label} transformer")
        if family is lumina.LUMINA2:  # its rope table is precomputed, not a buffer: redo it
            from diffusers.models.transformers.transformer_lumina2 import Lumina2RotaryPosEmbed

            module.rope_embedder = Lumina2RotaryPosEmbed(
                theta=10000,
                axes_dim=config["axes_dim_rope"],
                axes_lens=config["axes_lens"],
                patch_size=config["patch_size"],
            )
        return module
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    except (RuntimeError, ValueError, KeyError, IndexError, AssertionError) as exc:
        raise ModelError(
            f"{path.name} looks like a Z-Image / Lumina 2 transformer but does not fit that "
            f"architecture ({type(exc).__name__}: {exc})"
        ) from None


def family_of(module: Any) -> lumina.LuminaFamily:
    """The family of a loaded transformer (its class)."""
    return lumina.ZIMAGE if type(module).__name__.startswith("ZImage") else lumina.LUMINA2


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are a Z-Image or Lumina 2 transformer's."""
    return lumina.recognise(state) is not None


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from a diffusion-model-only file (ComfyUI's UNETLoader); fp8 weight dtypes keep
    the weights in fp8 and compute in the manager's dtype (diffusers' layerwise casting)."""
    storage = storage_dtype(weight_dtype)

    def load() -> Any:
        state = read_weights(path, manager)
        if lumina.recognise(state) is None:
            raise ModelError(
                f"{path.name} is not a Z-Image or Lumina 2 transformer ({summarise(state)})"
            )
        module = build_transformer(state, manager.dtype, path)
        return stored_as(module, storage, manager.dtype)

    module = manager.load_module((str(path.resolve()), f"lumina-transformer:{weight_dtype}"), load)
    return model_handle(name, module, manager, family_of(module))


def model_handle(
    name: str,
    module: Any,
    manager: Any,
    family: lumina.LuminaFamily,
    vae: VaeHandle | None = None,
    scheduler_config: Mapping[str, Any] | None = None,
) -> ModelHandle:
    return ModelHandle(
        name,
        module,
        dict(scheduler_config or family.scheduler_config),
        family.latent.factor,
        manager,
        vae=vae,
        family=family,
    )


# -- text encoders: Qwen3 (Z-Image) and Gemma 2 (Lumina 2) --------------------------------------
TEXT_PREFIXES = ("model.", "", "transformer.model.", "model.model.")
GEMMA2_HEAD_DIM = 256  # every Gemma 2 size but 27B (which ComfyUI's lumina2 type never takes)
QWEN3_ROPE_THETA = 1_000_000.0  # Qwen3-4B's config
GEMMA2_ROPE_THETA = 10_000.0  # Gemma-2-2B's config


def text_encoder_kind(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """("qwen3" or "gemma2", key prefix) of a language-model text encoder file, or None.
    Qwen3 normalises queries per head (`self_attn.q_norm`); Gemma 2 has norms around its
    feed-forward (`pre_feedforward_layernorm`)."""
    for prefix in TEXT_PREFIXES:
        head = prefix + "layers.0."
        if head + "self_attn.q_norm.weight" in state:
            return "qwen3", prefix
        if head + "pre_feedforward_layernorm.weight" in state:
            return "gemma2", prefix
    return None


def _count(sub: Mapping[str, Any], head: str) -> int:
    return lumina.count(sub, head)


def _load_language_model(
    cls: Any, config: Any, state: dict[str, Any], dtype: Any, what: str
) -> Any:
    """`cls(config)` built on the meta device and filled from `state`, as
    easel.models.state_dicts.load_into builds modules; the buffers no file holds (the rotary
    embedding's frequencies, Gemma's embedding scale) are computed on the CPU."""
    import torch

    with torch.device("meta"):
        model = cls(config)
    model.rotary_emb = type(model.rotary_emb)(config=model.config)
    embed = model.get_input_embeddings()
    if hasattr(embed, "scalar_embed_scale"):  # Gemma's embedding scale, a buffer no file holds
        embed.embed_scale = torch.tensor(embed.scalar_embed_scale)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"the {what} weights do not match its shape: {len(result.missing_keys)} missing "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]})"
        )
    meta = [name for name, buffer in model.named_buffers() if buffer.is_meta]
    if meta:
        raise ModelError(f"the {what} has no value for {', '.join(meta)}")
    return model.eval().requires_grad_(False)


def build_language_model(kind: str, state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A transformers Qwen3Model or Gemma2Model with its config read off the shapes."""
    sub = {
        k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and not k.startswith(prefix + "lm_head")
    }
    sub.pop("spiece_model", None)
    vocab, hidden = (int(n) for n in sub["embed_tokens.weight"].shape)
    layers = _count(sub, "layers.")
    q_rows = int(sub["layers.0.self_attn.q_proj.weight"].shape[0])
    kv_rows = int(sub["layers.0.self_attn.k_proj.weight"].shape[0])
    inner = int(sub["layers.0.mlp.gate_proj.weight"].shape[0])
    if kind == "qwen3":
        from transformers import Qwen3Config, Qwen3Model

        head_dim = int(sub["layers.0.self_attn.q_norm.weight"].shape[0])
        config: Any = Qwen3Config(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=inner,
            num_hidden_layers=layers,
            num_attention_heads=q_rows // head_dim,
            num_key_value_heads=kv_rows // head_dim,
            head_dim=head_dim,
            rope_parameters={"rope_type": "default", "rope_theta": QWEN3_ROPE_THETA},
            max_position_embeddings=40960,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
        )
        return _load_language_model(Qwen3Model, config, sub, dtype, "Qwen3 text encoder")
    from transformers import Gemma2Config, Gemma2Model

    head_dim = GEMMA2_HEAD_DIM
    if q_rows % head_dim or kv_rows % head_dim:
        raise ModelError(
            f"attention widths {q_rows} / {kv_rows} are not heads of {head_dim} (Gemma 2's)"
        )
    config = Gemma2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inner,
        num_hidden_layers=layers,
        num_attention_heads=q_rows // head_dim,
        num_key_value_heads=kv_rows // head_dim,
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        rope_parameters={"rope_type": "default", "rope_theta": GEMMA2_ROPE_THETA},
        rms_norm_eps=1e-6,
    )
    return _load_language_model(Gemma2Model, config, sub, dtype, "Gemma 2 text encoder")


def build_text_encoder(path: Path, state: Mapping[str, Any], manager: Any) -> tuple[str, Any, Any]:
    """(kind, model, tokenizer) of a Qwen3 or Gemma 2 text encoder file."""
    from easel.models import lumina_tokenizers

    found = text_encoder_kind(state)
    if found is None:
        raise ModelError(
            f"{path.name} is not a text encoder the lumina2 type takes ({summarise(state)}): "
            "it takes Qwen3 (Z-Image, qwen_3_4b) or Gemma 2 (Lumina 2, gemma_2_2b) files in "
            "transformers' key layout (model.layers.N.self_attn...)"
        )
    kind, prefix = found
    try:
        model = build_language_model(kind, state, prefix, manager.dtype)
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        raise ModelError(
            f"{path.name} looks like a {kind} text encoder but does not fit that "
            f"architecture ({type(exc).__name__}: {exc})"
        ) from None
    tokenizer = manager.load_module(
        (f"{kind}-tokenizer", kind),
        lambda: lumina_tokenizers.tokenizer(kind, checkpoint=path.name, roots=manager.roots),
    )
    return kind, model, tokenizer


def text_encoder(path: Path, manager: Any) -> tuple[str, Any, Any]:
    """One text encoder file, loaded once: (kind, model, tokenizer)."""

    key = str(path.resolve())
    loaded = manager.load_module(
        (key, "lumina-text-encoder"),
        lambda: build_text_encoder(path, read_weights(path, manager), manager),
    )
    hold(manager, key, {f"text_encoder:{loaded[0]}": loaded[1]})
    return loaded  # type: ignore[no-any-return]


KIND_FAMILY = {"qwen3": lumina.ZIMAGE, "gemma2": lumina.LUMINA2}


def clip_part(kind: str, model: Any, tokenizer: Any) -> TextEncoderPart:
    family = KIND_FAMILY[kind]
    spec = family.text[0]
    return TextEncoderPart(
        spec.key, tokenizer, model, layer=spec.layer, layer_norm=False, kind=kind
    )


def lumina2_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type lumina2: a Qwen3 file makes Z-Image's CLIP, a Gemma 2 file Lumina 2's
    (ComfyUI uses the one type for both)."""
    (path,) = paths
    kind, model, tokenizer = text_encoder(path, manager)
    return ClipHandle(name, (clip_part(kind, model, tokenizer),), manager, family=KIND_FAMILY[kind])


# -- diffusers folders --------------------------------------------------------------------------
PIPELINES = {"ZImagePipeline": lumina.ZIMAGE, "Lumina2Pipeline": lumina.LUMINA2}
FOLDER_CLASSES = {
    lumina.ZIMAGE.name: ("ZImageTransformer2DModel", "Qwen3Model", "qwen3"),
    lumina.LUMINA2.name: ("Lumina2Transformer2DModel", "Gemma2Model", "gemma2"),
}


def folder_family(folder: Path) -> lumina.LuminaFamily | None:
    index = folder / "model_index.json"
    if not index.is_file():
        return None
    from easel.models import loading

    return PIPELINES.get(str(loading.read_json(index).get("_class_name", "")))


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a ZImagePipeline's or Lumina2Pipeline's."""
    return folder_family(folder) is not None


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers ZImagePipeline / Lumina2Pipeline folder (transformer/, text_encoder/,
    tokenizer/, vae/, scheduler/)."""
    from easel.models import loading

    family = folder_family(folder)
    if family is None:
        raise ModelError(f"{folder.name} is not a Z-Image or Lumina 2 pipeline folder")
    transformer_cls, encoder_cls, kind = FOLDER_CLASSES[family.name]
    index = loading.model_index(folder)
    transformer = manager.module(
        folder / "transformer", *index.get("transformer", ("diffusers", transformer_cls))
    )
    vae = manager.module(folder / "vae", *index.get("vae", ("diffusers", "AutoencoderKL")))
    encoder = manager.module(
        folder / "text_encoder", *index.get("text_encoder", ("transformers", encoder_cls))
    )
    tokenizer = manager.module(
        folder / "tokenizer", *index.get("tokenizer", ("transformers", "AutoTokenizer"))
    )
    sched = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    vae_handle = VaeHandle(name, vae, manager)
    model = model_handle(name, transformer, manager, family, vae_handle, sched)
    clip = ClipHandle(name, (clip_part(kind, encoder, tokenizer),), manager, family=family)
    return model, clip, vae_handle


# -- single files holding every part (ComfyUI's all-in-one layout, e.g. NetaYume Lumina) -----
CHECKPOINT_PREFIX = "model.diffusion_model."
CHECKPOINT_TEXT = {
    "gemma2": "text_encoders.gemma2_2b.transformer.model.",
    "qwen3": "text_encoders.qwen3_4b.transformer.model.",
}
CHECKPOINT_VAE = "vae."


def is_checkpoint(state: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's keys hold a Z-Image or Lumina 2 transformer (family_files)."""
    return lumina.prefix_of(state) == CHECKPOINT_PREFIX


def single_file_checkpoint(
    name: str, path: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A checkpoint as ComfyUI saves one: the transformer under `model.diffusion_model.`, the
    text encoder under `text_encoders.gemma2_2b.transformer.model.` (Lumina 2) or
    `text_encoders.qwen3_4b.transformer.model.` (Z-Image), the VAE (original keys) under
    `vae.`. ComfyUI's `text_encoders.spiece_model` (Gemma's tokenizer) is not read: the
    tokenizer is found as for the split files."""
    from easel.models import lumina_tokenizers
    from easel.models.vae_files import load_vae_file

    def load() -> Any:
        state = read_weights(path, manager)
        family, _ = lumina.recognise(state) or (None, ())
        kind = "qwen3" if family is lumina.ZIMAGE else "gemma2"
        text_prefix = CHECKPOINT_TEXT[kind]
        missing = [
            what
            for what, prefix in (("text encoder", text_prefix), ("VAE", CHECKPOINT_VAE))
            if not any(k.startswith(prefix) for k in state)
        ]
        if family is None or missing:
            raise ModelError(
                f"{path.name} holds a Z-Image / Lumina 2 transformer but no "
                f"{', '.join(missing) or 'model'} (looked under {text_prefix}, "
                f"{CHECKPOINT_VAE}): put it in diffusion_models/ and load it with "
                "DiffusionModelLoader, TextEncoderLoader type lumina2 and VAELoader"
            )
        transformer = build_transformer(state, manager.dtype, path)
        try:
            encoder = build_language_model(kind, state, text_prefix, manager.dtype)
        except (RuntimeError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(
                f"{path.name}: its {kind} text encoder does not fit that architecture "
                f"({type(exc).__name__}: {exc})"
            ) from None
        vae_state = {
            k[len(CHECKPOINT_VAE) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_VAE)
        }
        vae = load_vae_file(path, vae_state, manager.dtype, family.latent)
        return transformer, (kind, encoder), vae

    key = str(path.resolve())
    transformer, (kind, encoder), vae = manager.load_module((key, "lumina-checkpoint"), load)
    hold(manager, key, {"transformer": transformer, "vae": vae, f"text_encoder:{kind}": encoder})
    tokenizer = manager.load_module(
        (f"{kind}-tokenizer", kind),
        lambda: lumina_tokenizers.tokenizer(kind, checkpoint=path.name, roots=manager.roots),
    )
    family = family_of(transformer)
    vae_handle = VaeHandle(name, vae, manager)
    model = model_handle(name, transformer, manager, family, vae_handle)
    clip = ClipHandle(name, (clip_part(kind, encoder, tokenizer),), manager, family=family)
    return model, clip, vae_handle
