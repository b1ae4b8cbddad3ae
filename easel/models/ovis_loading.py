"""Ovis-Image modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/) and
from a diffusers OvisImagePipeline folder.

- The transformer file holds Black Forest Labs' keys with ComfyUI's "yak" SwiGLU MLPs
  (`img_mlp.gate_proj` / `up_proj` / `down_proj`) and `txt_norm.scale` (ComfyUI's
  ovis_image_bf16 file), or diffusers' own keys. diffusers ships no converter for Ovis-Image's
  original layout (its Flux converter assumes GELU MLPs and a pooled-text input), so the key
  mapping is written here (`convert_transformer`); it is Flux's mapping plus the gated MLPs,
  whose two halves diffusers keeps in one linear, value half first (as ComfyUI's single
  blocks do).
- The text encoder is Ovis 2.5's language model, a Qwen3 in transformers' keys (loaded as
  transformers' Qwen3Model by easel.models.lumina_loading's shape reader); its tokenizer is
  Qwen's (ComfyUI's qwen25_tokenizer), found by easel.models.qwen_tokenizer.
- The VAE is the Flux VAE (VAELoader).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import ovis
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import diffusion_model_files, fitted, no_single_file


def _swap_halves(value: Any) -> Any:
    """(shift, scale) -> (scale, shift): the final modulation's halves, as diffusers' Flux
    converter swaps them."""
    import torch

    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def convert_transformer(state: Mapping[str, Any]) -> dict[str, Any]:
    """An Ovis-Image transformer's keys (either layout, any prefix) ->
    OvisImageTransformer2DModel keys."""
    import torch

    found = ovis.layout_of(state)
    if found is None:
        raise ModelError("no Ovis-Image transformer (double_blocks with gate_proj, txt_norm)")
    layout, prefix = found
    src = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if layout == "diffusers":
        return src
    out: dict[str, Any] = {}

    def move(dst: str, name: str) -> None:
        for kind in ("weight", "bias"):
            if f"{name}.{kind}" in src:
                out[f"{dst}.{kind}"] = src.pop(f"{name}.{kind}")

    def split(dsts: tuple[str, ...], name: str, sizes: list[int]) -> None:
        for kind in ("weight", "bias"):
            if f"{name}.{kind}" in src:
                pieces = torch.split(src.pop(f"{name}.{kind}"), sizes, dim=0)
                for dst, piece in zip(dsts, pieces, strict=True):
                    out[f"{dst}.{kind}"] = piece

    def gated(dst: str, name: str) -> None:  # (value, gate) in one linear, value first
        for kind in ("weight", "bias"):
            up, gate = f"{name}.up_proj.{kind}", f"{name}.gate_proj.{kind}"
            if up in src:
                out[f"{dst}.{kind}"] = torch.cat([src.pop(up), src.pop(gate)], dim=0)

    def norm(dst: str, name: str) -> None:
        out[dst + ".weight"] = src.pop(name + ".scale")

    hidden = int(src["img_in.weight"].shape[0])
    move("timestep_embedder.linear_1", "time_in.in_layer")
    move("timestep_embedder.linear_2", "time_in.out_layer")
    norm("context_embedder_norm", "txt_norm")
    move("context_embedder", "txt_in")
    move("x_embedder", "img_in")
    for i in range(ovis._count(src, "double_blocks.")):
        b, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        move(b + "norm1.linear", d + "img_mod.lin")
        move(b + "norm1_context.linear", d + "txt_mod.lin")
        thirds = [hidden] * 3
        split((b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"), d + "img_attn.qkv", thirds)
        split(
            (b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"),
            d + "txt_attn.qkv",
            thirds,
        )
        norm(b + "attn.norm_q", d + "img_attn.norm.query_norm")
        norm(b + "attn.norm_k", d + "img_attn.norm.key_norm")
        norm(b + "attn.norm_added_q", d + "txt_attn.norm.query_norm")
        norm(b + "attn.norm_added_k", d + "txt_attn.norm.key_norm")
        move(b + "attn.to_out.0", d + "img_attn.proj")
        move(b + "attn.to_add_out", d + "txt_attn.proj")
        gated(b + "ff.net.0.proj", d + "img_mlp")
        move(b + "ff.net.2", d + "img_mlp.down_proj")
        gated(b + "ff_context.net.0.proj", d + "txt_mlp")
        move(b + "ff_context.net.2", d + "txt_mlp.down_proj")
    for i in range(ovis._count(src, "single_blocks.")):
        b, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        move(b + "norm.linear", d + "modulation.lin")
        rows = int(src[d + "linear1.weight"].shape[0])
        split(
            (b + "attn.to_q", b + "attn.to_k", b + "attn.to_v", b + "proj_mlp"),
            d + "linear1",
            [hidden, hidden, hidden, rows - 3 * hidden],
        )
        norm(b + "attn.norm_q", d + "norm.query_norm")
        norm(b + "attn.norm_k", d + "norm.key_norm")
        move(b + "proj_out", d + "linear2")
    move("proj_out", "final_layer.linear")
    for kind in ("weight", "bias"):
        out[f"norm_out.linear.{kind}"] = _swap_halves(
            src.pop(f"final_layer.adaLN_modulation.1.{kind}")
        )
    if src:
        raise ModelError(f"keys Ovis-Image does not have: {sorted(src)[:5]}")
    return out


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """An OvisImageTransformer2DModel from a ComfyUI-layout (or diffusers-keyed) file."""
    from diffusers import OvisImageTransformer2DModel

    from easel.models.qwen_loading import build_module

    def build() -> Any:
        config = ovis.transformer_config(state)
        converted = convert_transformer(dict(state))
        return build_module(
            OvisImageTransformer2DModel, config, converted, dtype, "Ovis-Image transformer"
        )

    return fitted(path, "an Ovis-Image transformer", build)


recognise_diffusion_model, diffusion_model = diffusion_model_files(
    ovis.OVIS,
    ovis.recognise,
    kind="ovis",
    what="an Ovis-Image transformer",
    build=build_transformer,
)


# -- the text encoder (Ovis 2.5's Qwen3) ----------------------------------------------------------
TEXT_PREFIXES = ("llm.model.", "llm.")  # Ovis 2.5's own layout, beside lumina_loading's


def qwen3_prefix(state: Mapping[str, Any]) -> str | None:
    """Where a Qwen3 language model's keys start in `state`, or None."""
    from easel.models.lumina_loading import text_encoder_kind

    found = text_encoder_kind(state)
    if found is not None and found[0] == "qwen3":
        return found[1]
    for prefix in TEXT_PREFIXES:
        if prefix + "layers.0.self_attn.q_norm.weight" in state:
            return prefix
    return None


def build_text_encoder(path: Path, manager: Any) -> tuple[Any, Any]:
    """(Qwen3Model, tokenizer) of an Ovis 2.5 text encoder file."""
    from easel.models.lumina_loading import build_language_model, read_weights
    from easel.models.qwen_tokenizer import qwen_tokenizer

    state = read_weights(path, manager)
    prefix = qwen3_prefix(state)
    if prefix is None:
        raise ModelError(
            f"{path.name} is not a Qwen3 language model ({summarise(state)}); type ovis takes "
            "ComfyUI's ovis_2.5 file (model.layers.N.self_attn.q_norm ...)"
        )
    model = fitted(
        path,
        "a Qwen3 text encoder",
        lambda: build_language_model("qwen3", state, prefix, manager.dtype),
    )
    tokenizer = manager.load_module(
        ("qwen25-tokenizer", "qwen25"),
        lambda: qwen_tokenizer(checkpoint=path.name, roots=manager.roots),
    )
    return model, tokenizer


def ovis_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type ovis: one Ovis 2.5 file (its Qwen3 language model)."""
    (path,) = paths
    key = str(path.resolve())
    model, tokenizer = manager.load_module(
        (key, "ovis-text-encoder"), lambda: build_text_encoder(path, manager)
    )
    hold(manager, key, {"text_encoder:qwen3": model})
    part = TextEncoderPart("qwen3", tokenizer, model, kind="qwen3")
    return ClipHandle(name, (part,), manager, family=ovis.OVIS)


# -- diffusers folders (family_files.CHECKPOINTS) ---------------------------------------------
# ComfyUI has no single-file Ovis-Image checkpoint layout: none is read as one.
is_checkpoint, single_file_checkpoint = no_single_file(
    "Ovis-Image comes as split files: DiffusionModelLoader, TextEncoderLoader type ovis and "
    "VAELoader"
)


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is an OvisImagePipeline's."""
    from easel.models import loading

    return loading.pipeline_class(folder).startswith("OvisImage")


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers OvisImagePipeline folder: transformer/, text_encoder/ (Qwen3Model),
    tokenizer/, vae/ (AutoencoderKL), scheduler/."""
    from easel.models import loading

    index = loading.model_index(folder)

    def part(sub: str, library: str, cls: str) -> Any:
        return manager.module(folder / sub, *index.get(sub, (library, cls)))

    transformer = part("transformer", "diffusers", "OvisImageTransformer2DModel")
    vae = part("vae", "diffusers", "AutoencoderKL")
    te = part("text_encoder", "transformers", "Qwen3Model")
    tok = part("tokenizer", "transformers", "Qwen2TokenizerFast")
    family = ovis.OVIS
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
    clip = ClipHandle(
        name, (TextEncoderPart("qwen3", tok, te, kind="qwen3"),), manager, family=family
    )
    return model, clip, vae_handle
