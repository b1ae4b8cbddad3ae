"""Flux.1 modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/), from a
single file holding all of them, and from a diffusers folder.

Key conversion is diffusers' `convert_flux_transformer_checkpoint_to_diffusers`; the configs
are read off the tensor shapes (easel.models.families.flux); text encoders are transformers'
CLIPTextModel and T5EncoderModel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import flux
from easel.models.families.recognise import summarise
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle

# diffusers' converter splits single blocks' fused linear1 at Flux.1's width (3072).
DIFFUSERS_FLUX_WIDTH = 3072
WEIGHT_DTYPES = ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")


def convert_transformer(state: Mapping[str, Any]) -> dict[str, Any]:
    """Original (BFL) keys -> diffusers FluxTransformer2DModel keys, by diffusers' converter.

    That converter splits each single block's fused `linear1` (q, k, v, mlp) at Flux.1's width
    of 3072. For another width (the tests' tiny models, pruned variants) it is handed shape-only
    meta tensors of that layout, and the four pieces are split here at the real width; every
    other key is diffusers' own mapping."""
    import torch
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )

    prefix = flux.prefix_of(state)
    if prefix is None:
        raise ModelError("no Flux transformer (double_blocks) in the file")
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    hidden = int(sub["img_in.weight"].shape[0])
    fused: dict[int, tuple[Any, Any]] = {}
    if hidden != DIFFUSERS_FLUX_WIDTH:
        rows = DIFFUSERS_FLUX_WIDTH * 7  # q, k, v (3 x 3072) + mlp (4 x 3072)
        for key in [k for k in sub if re.fullmatch(r"single_blocks\.\d+\.linear1\.weight", k)]:
            block = int(key.split(".")[1])
            bias_key = key.replace(".weight", ".bias")
            fused[block] = (sub[key], sub[bias_key])
            sub[key] = torch.empty(rows, sub[key].shape[1], device="meta")
            sub[bias_key] = torch.empty(rows, device="meta")
    converted = convert_flux_transformer_checkpoint_to_diffusers(sub)
    for block, (weight, bias) in fused.items():
        sizes = [hidden, hidden, hidden, int(weight.shape[0]) - 3 * hidden]
        head = f"single_transformer_blocks.{block}."
        for name, w, b in zip(
            ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
            torch.split(weight, sizes),
            torch.split(bias, sizes),
            strict=True,
        ):
            converted[head + name + ".weight"] = w
            converted[head + name + ".bias"] = b
    return converted


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A FluxTransformer2DModel from an original-layout state dict."""
    from diffusers import FluxTransformer2DModel

    from easel.models.state_dicts import load_into

    try:
        config = flux.transformer_config(state)
        converted = convert_transformer(dict(state))
        return load_into(FluxTransformer2DModel, config, converted, dtype, "Flux transformer")
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        raise ModelError(
            f"{path.name} looks like a Flux.1 transformer but does not fit that "
            f"architecture ({type(exc).__name__}: {exc})"
        ) from None


# ComfyUI's "fp8_scaled" files: each linear weight in fp8 with a per-tensor scale beside it
# (`<layer>.scale_weight`; newer files `<layer>.weight_scale`), input scales for fp8 matmuls,
# and a `scaled_fp8` marker tensor.
WEIGHT_SCALES = (".scale_weight", ".weight_scale")
QUANT_EXTRAS = (".scale_input", ".input_scale", ".comfy_quant")


def dequantize_scaled_fp8(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with scaled fp8 weights multiplied back out (float32), the scales and markers
    dropped; a file without them is returned as it is."""
    scales = {k: v for k, v in state.items() if k.endswith(WEIGHT_SCALES)}
    if not scales and not any(k.endswith("scaled_fp8") for k in state):
        return dict(state)
    out = {
        k: v
        for k, v in state.items()
        if k not in scales and not k.endswith(QUANT_EXTRAS) and not k.endswith("scaled_fp8")
    }
    for key, scale in scales.items():
        weight_key = key.rsplit(".", 1)[0] + ".weight"
        if weight_key in out:
            out[weight_key] = out[weight_key].float() * scale.float()
    return out


def storage_dtype(weight_dtype: str) -> Any:
    """ComfyUI's UNETLoader weight_dtype as a torch storage dtype (None: the manager's)."""
    import torch

    if weight_dtype not in WEIGHT_DTYPES:
        raise ModelError(f"weight_dtype {weight_dtype!r} is not one of {', '.join(WEIGHT_DTYPES)}")
    if weight_dtype == "default":
        return None
    return torch.float8_e5m2 if weight_dtype == "fp8_e5m2" else torch.float8_e4m3fn


def stored_as(module: Any, storage: Any, compute_dtype: Any) -> Any:
    """`module` keeping its weights in `storage` (an fp8 dtype from `storage_dtype`, or None
    for as loaded) and computing in `compute_dtype` (diffusers' layerwise casting); the
    sampler reads `easel_compute_dtype` to feed it."""
    if storage is not None:
        module.enable_layerwise_casting(storage_dtype=storage, compute_dtype=compute_dtype)
        module.easel_compute_dtype = compute_dtype
    return module


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are a Flux.1 transformer's (family_files)."""
    return flux.recognise(state) is not None


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from a diffusion-model-only file (ComfyUI's UNETLoader). fp8 weight dtypes keep
    the weights in fp8 and compute in the manager's dtype (diffusers' layerwise casting)."""
    from easel.models.transformer_files import read_weights

    storage = storage_dtype(weight_dtype)

    def load() -> Any:
        state = read_weights(path, manager)
        if flux.recognise(state) is None:
            raise ModelError(
                f"{path.name} is not a Flux.1 transformer ({summarise(state)}): "
                "Easel reads them in the original layout (double_blocks / single_blocks)"
            )
        module = build_transformer(state, manager.dtype, path)
        return stored_as(module, storage, manager.dtype)

    module = manager.load_module((str(path.resolve()), f"flux-transformer:{weight_dtype}"), load)
    return model_handle(name, module, manager, flux.folder_family(module.config))


def model_handle(
    name: str, module: Any, manager: Any, family: flux.FlowFamily, vae: VaeHandle | None = None
) -> ModelHandle:
    return ModelHandle(
        name,
        module,
        dict(family.scheduler_config),
        family.latent.factor,
        manager,
        vae=vae,
        family=family,
    )


# -- text encoders ----------------------------------------------------------------------------
CLIP_PREFIXES = ("transformer.", "")
T5_PREFIXES = ("", "transformer.")


def text_encoder_kind(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """("clip_l" or "t5", key prefix) of a text encoder file, or None."""
    for prefix in T5_PREFIXES:
        if prefix + "encoder.block.0.layer.0.SelfAttention.q.weight" in state:
            return "t5", prefix
    for prefix in CLIP_PREFIXES:
        for inner in ("text_model.", ""):
            key = prefix + inner + "encoder.layers.0.self_attn.q_proj.weight"
            if key in state:
                return "clip_l", prefix
    return None


def build_t5(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A transformers T5EncoderModel (T5 v1.1: gated GELU) with its config read off the shapes:
    heads from the relative attention bias, depth from the block indices."""
    from transformers import T5Config, T5EncoderModel

    from easel.models.state_dicts import load_into

    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    embed = sub.get("shared.weight", sub.get("encoder.embed_tokens.weight"))
    if embed is None:
        raise ModelError("the T5 encoder has no token embedding (shared.weight)")
    sub.setdefault("shared.weight", embed)
    sub.setdefault("encoder.embed_tokens.weight", embed)
    vocab, d_model = (int(n) for n in embed.shape)
    bias = sub["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    buckets, heads = (int(n) for n in bias.shape)
    inner = int(sub["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0])
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in sub
    ff_key = "encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"
    layers = len({k.split(".")[2] for k in sub if k.startswith("encoder.block.")})
    config = T5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=inner // heads,
        d_ff=int(sub[ff_key].shape[0]),
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        feed_forward_proj="gated-gelu" if gated else "relu",
        is_encoder_decoder=False,
        use_cache=False,
    )
    return load_into(T5EncoderModel, config, sub, dtype, "T5 text encoder", strict=False)


def build_text_encoder(
    path: Path, state: Mapping[str, Any], manager: Any, found: tuple[str, str] | None = None
) -> tuple[str, Any, Any]:
    """(kind, model, tokenizer) of one text encoder file (or of the encoder of `kind` under
    `prefix` in a checkpoint, when `found` = (kind, prefix) says so)."""
    from easel.models import tokenizers
    from easel.models.single_file import build_clip_l, token_ids

    found = found or text_encoder_kind(state)
    if found is None:
        raise ModelError(
            f"{path.name} is not a text encoder Easel recognises "
            f"({summarise(state)}). Easel reads CLIP-L (text_model.*) and T5 "
            "encoders (encoder.block.*) in transformers' key layout"
        )
    kind, prefix = found
    try:
        if kind == "t5":
            tokenizer = manager.load_module(
                ("t5-tokenizer", "t5"),
                lambda: tokenizers.t5_tokenizer(
                    checkpoint=path.name, contents="T5 encoder weights", roots=manager.roots
                ),
            )
            return kind, build_t5(state, prefix, manager.dtype), tokenizer
        tokenizer = manager.clip_tokenizer(path)
        model = build_clip_l(state, prefix, flux.FLUX_CLIP_L, manager.dtype, token_ids(tokenizer))
        return kind, model, tokenizer
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    except (RuntimeError, ValueError, KeyError, IndexError, StopIteration) as exc:
        raise ModelError(
            f"{path.name} looks like a {kind} text encoder but does not fit that "
            f"architecture ({type(exc).__name__}: {exc})"
        ) from None


def text_encoder(path: Path, manager: Any) -> tuple[str, Any, Any]:
    """One text encoder file, loaded once: (kind, model, tokenizer)."""
    from easel.models.transformer_files import read_weights

    key = str(path.resolve())
    loaded = manager.load_module(
        (key, "text_encoder"),
        lambda: build_text_encoder(path, read_weights(path, manager), manager),
    )
    hold(manager, key, {f"text_encoder:{loaded[0]}": loaded[1]})
    return loaded  # type: ignore[no-any-return]


def hold(manager: Any, key: str, modules: Mapping[str, Any]) -> None:
    """Hold modules loaded as parts of a tuple on their own too, so that the manager places,
    offloads (least recently used first) and describes each of them."""
    for part, module in modules.items():
        manager.load_module((key, part), lambda module=module: module)


def flux_parts(encoders: list[tuple[str, Any, Any]], where: str) -> tuple[TextEncoderPart, ...]:
    """The "l" and "t5" parts of a Flux CLIP from two loaded encoders, in either order."""
    kinds = {kind: (model, tok) for kind, model, tok in encoders}
    if set(kinds) != {"clip_l", "t5"}:
        got = ", ".join(kind for kind, _, _ in encoders)
        raise ModelError(f"Flux needs a CLIP-L and a T5 text encoder; {where} are: {got}")
    clip_model, clip_tok = kinds["clip_l"]
    t5_model, t5_tok = kinds["t5"]
    return (
        TextEncoderPart("l", clip_tok, clip_model, pooled=True),
        TextEncoderPart("t5", t5_tok, t5_model, kind="t5"),
    )


def sd_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type stable_diffusion: one CLIP-L file as a Stable Diffusion 1.x CLIP."""
    from easel.models.families import sd

    (path,) = paths
    kind, model, tokenizer = text_encoder(path, manager)
    if kind != "clip_l":
        raise ModelError(f"{path.name} is a {kind} text encoder; this type takes a CLIP-L file")
    spec = sd.CLIP_L
    part = TextEncoderPart(spec.key, tokenizer, model, layer=spec.layer, layer_norm=spec.layer_norm)
    return ClipHandle(name, (part,), manager, family=sd.SD1)


def flux_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIP (parts "l" and "t5") from ComfyUI's two Flux text encoder files."""
    encoders = [text_encoder(path, manager) for path in paths]
    parts = flux_parts(encoders, " and ".join(p.name for p in paths))
    return ClipHandle(name, parts, manager, family=flux.FLUX_DEV)


# -- single files holding every part (ComfyUI's checkpoint layout for Flux) -----------------
CHECKPOINT_CLIP_L = "text_encoders.clip_l.transformer."
CHECKPOINT_T5 = "text_encoders.t5xxl.transformer."
CHECKPOINT_VAE = "vae."


def is_checkpoint(state: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's keys hold a Flux transformer (easel.models.family_files)."""
    return any(k.startswith("model.diffusion_model.double_blocks.") for k in state)


def single_file_checkpoint(
    name: str, path: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A Flux checkpoint as ComfyUI saves one: the transformer under `model.diffusion_model.`,
    CLIP-L under `text_encoders.clip_l.transformer.`, T5 under `text_encoders.t5xxl.transformer.`
    and the VAE (original keys) under `vae.`."""
    from easel.models.transformer_files import read_weights
    from easel.models.vae_files import load_vae_file

    def load() -> Any:
        state = read_weights(path, manager)
        missing = [
            what
            for what, prefix in (
                ("CLIP-L", CHECKPOINT_CLIP_L),
                ("T5", CHECKPOINT_T5),
                ("VAE", CHECKPOINT_VAE),
            )
            if not any(k.startswith(prefix) for k in state)
        ]
        if missing:
            raise ModelError(
                f"{path.name} holds a Flux transformer but no {', '.join(missing)}"
                f" (looked under {CHECKPOINT_CLIP_L}, {CHECKPOINT_T5}, "
                f"{CHECKPOINT_VAE}): put it in diffusion_models/ and load it with "
                "DiffusionModelLoader, DualTextEncoderLoader and VAELoader"
            )
        transformer = build_transformer(state, manager.dtype, path)
        clip_l = build_text_encoder(path, state, manager, ("clip_l", CHECKPOINT_CLIP_L))
        t5 = build_text_encoder(path, state, manager, ("t5", CHECKPOINT_T5))
        vae_state = {
            k[len(CHECKPOINT_VAE) :]: v for k, v in state.items() if k.startswith(CHECKPOINT_VAE)
        }
        return transformer, [clip_l, t5], load_vae_file(path, vae_state, manager.dtype)

    key = str(path.resolve())
    transformer, encoders, vae = manager.load_module((key, "flux-checkpoint"), load)
    hold(
        manager,
        key,
        {
            "transformer": transformer,
            "vae": vae,
            **{f"text_encoder:{kind}": model for kind, model, _ in encoders},
        },
    )
    family = flux.folder_family(transformer.config)
    vae_handle = VaeHandle(name, vae, manager)
    model = model_handle(name, transformer, manager, family, vae_handle)
    clip = ClipHandle(name, flux_parts(encoders, path.name), manager, family=family)
    return model, clip, vae_handle


# -- diffusers folders ------------------------------------------------------------------------
def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers FluxPipeline folder (transformer/, text_encoder/, text_encoder_2/, vae/)."""
    from easel.models import loading

    index = loading.model_index(folder) if (folder / "model_index.json").is_file() else {}
    transformer = manager.module(
        folder / "transformer", *index.get("transformer", ("diffusers", "FluxTransformer2DModel"))
    )
    vae = manager.module(folder / "vae", *index.get("vae", ("diffusers", "AutoencoderKL")))
    te = manager.module(
        folder / "text_encoder", *index.get("text_encoder", ("transformers", "CLIPTextModel"))
    )
    te2 = manager.module(
        folder / "text_encoder_2", *index.get("text_encoder_2", ("transformers", "T5EncoderModel"))
    )
    tok = manager.module(
        folder / "tokenizer", *index.get("tokenizer", ("transformers", "CLIPTokenizer"))
    )
    tok2 = manager.module(
        folder / "tokenizer_2", *index.get("tokenizer_2", ("transformers", "T5TokenizerFast"))
    )
    family = flux.folder_family(transformer.config)
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
    parts = (
        TextEncoderPart("l", tok, te, pooled=True),
        TextEncoderPart("t5", tok2, te2, kind="t5"),
    )
    return model, ClipHandle(name, parts, manager, family=family), vae_handle


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a Flux pipeline's (easel.models.family_files)."""
    return (folder / "transformer").is_dir() and (folder / "text_encoder_2").is_dir()
