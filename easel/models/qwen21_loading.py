"""Qwen-Image 2.1 modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/).

- The transformer file holds diffusers' keys with the SwiGLU gate and up projections fused
  (`img_mlp.gate_up`, gate rows first), with or without `model.diffusion_model.`: diffusers'
  `convert_qwen_image21_transformer_checkpoint_to_diffusers` splits them; the config is read
  off the shapes (easel.models.families.qwen_image21).
- The text encoder file is Qwen3-VL (ComfyUI's qwen3vl_8b, CLIPLoader type qwen_image) in
  transformers' keys (`model.language_model.*`, `model.visual.*`) or the original text-only
  ones (`model.layers.*`). Its language model is loaded as transformers' Qwen3VLTextModel with
  its config read off the shapes; with its vision tower (`visual.*`) the whole model loads as
  transformers' Qwen3VLForConditionalGeneration (reference images need it), without it the
  language model alone as Qwen3VLTextModel (enough for text to image).
- The VAE: easel.models.qwen21_vae.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import qwen_image21
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold, storage_dtype, stored_as
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.qwen_loading import build_module
from easel.models.transformer_files import fitted, no_single_file

# Qwen3-VL-8B's language model: rope theta and interleaved multimodal sections (head_dim / 2)
ROPE_THETA = 5000000.0
MROPE_SECTION = (24, 20, 20)


# -- the transformer ----------------------------------------------------------------------------
def transformer_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers' keys: ComfyUI's prefix dropped and the fused SwiGLU split (diffusers'
    converter)."""
    from diffusers.loaders.single_file_utils import (
        convert_qwen_image21_transformer_checkpoint_to_diffusers,
    )

    prefix = qwen_image21.prefix_of(state)
    if prefix is None:
        raise ModelError("no Qwen-Image 2.1 transformer (modulation, txt_in.text_norm) in the file")
    plain = {
        "model.diffusion_model." + k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix)
    }
    return convert_qwen_image21_transformer_checkpoint_to_diffusers(plain)


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A QwenImage21Transformer2DModel from a ComfyUI-layout state dict."""
    from diffusers import QwenImage21Transformer2DModel

    def build() -> Any:
        config = qwen_image21.transformer_config(state)
        return build_module(
            QwenImage21Transformer2DModel,
            config,
            transformer_state(state),
            dtype,
            "Qwen-Image 2.1 transformer",
        )

    return fitted(path, "a Qwen-Image 2.1 transformer", build)


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are a Qwen-Image 2.1 transformer's (family_files)."""
    return qwen_image21.recognise(state) is not None


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from a diffusion-model-only file (ComfyUI's UNETLoader); fp8 weight dtypes keep
    the weights in fp8 and compute in the manager's dtype (diffusers' layerwise casting)."""
    from easel.models.transformer_files import read_weights

    storage = storage_dtype(weight_dtype)

    def load() -> Any:
        state = read_weights(path, manager)
        if qwen_image21.recognise(state) is None:
            raise ModelError(
                f"{path.name} is not a Qwen-Image 2.1 transformer ({summarise(state)})"
            )
        module = build_transformer(state, manager.dtype, path)
        return stored_as(module, storage, manager.dtype)

    module = manager.load_module((str(path.resolve()), f"qwen21-transformer:{weight_dtype}"), load)
    family = qwen_image21.QWEN_IMAGE21
    return ModelHandle(
        name,
        module,
        dict(family.scheduler_config),
        family.latent.factor,
        manager,
        family=family,
    )


# -- the text encoder (Qwen3-VL) ----------------------------------------------------------------
TEXT_PREFIXES = ("model.language_model.", "model.")
LAYER_PROBE = "layers.0.self_attn.q_norm.weight"


def text_prefix(state: Mapping[str, Any]) -> str | None:
    """Where Qwen3-VL's language model starts in a text encoder file (None: not Qwen3-VL). Its
    layers have q/k norms and no q/k/v biases (Qwen2.5-VL's have biases and no norms)."""
    for prefix in TEXT_PREFIXES:
        if (
            prefix + LAYER_PROBE in state
            and prefix + "layers.0.self_attn.q_proj.bias" not in state
            and prefix + "embed_tokens.weight" in state
        ):
            return prefix
    return None


def is_qwen3_vl(state: Mapping[str, Any]) -> bool:
    return text_prefix(state) is not None


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(re.escape(head) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def _mrope(head_dim: int) -> list[int]:
    """Qwen3-VL's multimodal rope sections for `head_dim` (the released 128: 24, 20, 20)."""
    half = head_dim // 2
    if half == sum(MROPE_SECTION):
        return list(MROPE_SECTION)
    rows = half * 5 // 16
    return [half - 2 * rows, rows, rows]


def text_config(state: Mapping[str, Any], prefix: str) -> Any:
    """Qwen3VLTextConfig read off the shapes: head width from the q norm, heads from the q and
    k projections, depth from the layer indices."""
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLTextConfig

    vocab, hidden = (int(n) for n in state[prefix + "embed_tokens.weight"].shape)
    head = int(state[prefix + LAYER_PROBE].shape[0])
    q = int(state[prefix + "layers.0.self_attn.q_proj.weight"].shape[0])
    kv = int(state[prefix + "layers.0.self_attn.k_proj.weight"].shape[0])
    if q % head or kv % head:
        raise ModelError(f"attention widths {q} / {kv} are not heads of {head}: not Qwen3-VL")
    return Qwen3VLTextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(state[prefix + "layers.0.mlp.gate_proj.weight"].shape[0]),
        num_hidden_layers=_count(state, prefix + "layers."),
        num_attention_heads=q // head,
        num_key_value_heads=kv // head,
        head_dim=head,
        rms_norm_eps=1e-6,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": ROPE_THETA,
            "mrope_section": _mrope(head),
            "mrope_interleaved": True,
        },
    )


VISION_PREFIXES = ("model.visual.", "visual.")
RELEASED_DEEPSTACK = {(27, 3): [8, 16, 24]}  # Qwen3-VL-8B's vision tower: depth 27, 3 mergers


def vision_prefix(state: Mapping[str, Any]) -> str | None:
    for prefix in VISION_PREFIXES:
        if prefix + "patch_embed.proj.weight" in state:
            return prefix
    return None


def vision_config(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Qwen3VLVisionConfig's values read off the shapes. Heads are not in the shapes (q, k
    and v are one projection): heads of 72 channels where the width allows (Qwen3-VL-8B's
    1152 = 16 x 72), else 64 (the smaller towers'). The layers whose features the deepstack
    mergers take are not in the shapes either: the released 8B tower's (8, 16, 24), else
    spread evenly."""
    width, channels, temporal, patch, _ = (
        int(n) for n in state[prefix + "patch_embed.proj.weight"].shape
    )
    depth = _count(state, prefix + "blocks.")
    mergers = _count(state, prefix + "deepstack_merger_list.")
    merge_in = int(state[prefix + "merger.linear_fc1.weight"].shape[1])
    deepstack = RELEASED_DEEPSTACK.get(
        (depth, mergers), [(i + 1) * depth // (mergers + 1) for i in range(mergers)]
    )
    return {
        "depth": depth,
        "hidden_size": width,
        "in_channels": channels,
        "temporal_patch_size": temporal,
        "patch_size": patch,
        "spatial_merge_size": round((merge_in // width) ** 0.5),
        "intermediate_size": int(state[prefix + "blocks.0.mlp.linear_fc1.weight"].shape[0]),
        "num_heads": width // 72 if width % 72 == 0 else max(1, width // 64),
        "out_hidden_size": int(state[prefix + "merger.linear_fc2.weight"].shape[0]),
        "num_position_embeddings": int(state[prefix + "pos_embed.weight"].shape[0]),
        "deepstack_visual_indexes": deepstack,
    }


def _token_ids(tokenizer: Any) -> dict[str, int]:
    ids = {}
    for name, token in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            ids[name] = int(token_id)
    return ids


def build_text_encoder(
    path: Path, state: Mapping[str, Any], dtype: Any, tokenizer: Any = None
) -> Any:
    """transformers' Qwen3VLForConditionalGeneration when the file has the vision tower (and a
    tokenizer names the vision tokens), else Qwen3VLTextModel (the language model)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextModel

    prefix = text_prefix(state)
    if prefix is None:
        raise ModelError(f"{path.name}: no Qwen3-VL language model in the file")

    def build() -> Any:
        config = text_config(state, prefix)
        visual = vision_prefix(state)
        if visual is not None and tokenizer is not None:
            values: dict[str, Any] = {
                "text_config": config.to_dict(),
                "vision_config": vision_config(state, visual),
                "tie_word_embeddings": False,
                **_token_ids(tokenizer),
            }
            full = Qwen3VLConfig(**values)
            renamed = {}
            for key, value in state.items():
                if key.startswith(visual):
                    key = "model.visual." + key[len(visual) :]
                elif key.startswith(prefix):
                    key = "model.language_model." + key[len(prefix) :]
                renamed[key] = value
            return build_module(Qwen3VLForConditionalGeneration, full, renamed, dtype, "Qwen3-VL")
        text = {
            k[len(prefix) :]: v
            for k, v in state.items()
            if k.startswith(prefix) and not k.startswith("model.visual.")
        }
        model = build_module(Qwen3VLTextModel, config, text, dtype, "Qwen3-VL language model")
        from easel.models.text_generation import file_lm_head, keep_lm_head

        head = file_lm_head(state, prefix)
        if head is not None:  # TextGenerate's head (Qwen3-VL-8B's is not tied)
            keep_lm_head(model, head.to(dtype))
        return model

    return fitted(path, "a Qwen3-VL text encoder", build)


def qwen21_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type qwen_image with a Qwen3-VL file (ComfyUI's qwen3vl_8b*): Qwen-Image
    2.1's text encoder. The tokenizer is Qwen's (easel.models.qwen_tokenizer)."""
    from easel.models.qwen_tokenizer import qwen_tokenizer
    from easel.models.transformer_files import read_weights

    (path,) = paths
    key = str(path.resolve())

    def load() -> Any:
        state = read_weights(path, manager)
        if not is_qwen3_vl(state):
            raise ModelError(f"{path.name} is not a Qwen3-VL text encoder ({summarise(state)})")
        tokenizer = manager.load_module(
            ("qwen25-tokenizer", "qwen25"),
            lambda: qwen_tokenizer(checkpoint=path.name, roots=manager.roots),
        )
        return build_text_encoder(path, state, manager.dtype, tokenizer), tokenizer

    model, tokenizer = manager.load_module((key, "qwen3_vl"), load)
    hold(manager, key, {"text_encoder:qwen3vl": model})
    part = TextEncoderPart("qwen3vl", tokenizer, model, kind="qwen3vl")
    return ClipHandle(name, (part,), manager, family=qwen_image21.QWEN_IMAGE21)


# -- single files and diffusers folders ---------------------------------------------------------
# ComfyUI has no single-file Qwen-Image 2.1 checkpoint layout: none is read as one.
is_checkpoint, single_file_checkpoint = no_single_file(
    "Qwen-Image 2.1 comes as split files: DiffusionModelLoader, TextEncoderLoader type "
    "qwen_image (a Qwen3-VL file) and VAELoader"
)


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a QwenImage21Pipeline's."""
    import json

    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return str(index.get("_class_name", "")).startswith("QwenImage21")


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers QwenImage21Pipeline folder: transformer/, text_encoder/ (Qwen3-VL),
    processor/ (its tokenizer), vae/ (AutoencoderKLQwenImage21), scheduler/. The pipeline's
    `sample_sigmas` (the Turbo checkpoint's default grid) are not used: the sampler's schedule
    is what the workflow asks for."""
    from easel.models import loading
    from easel.models.qwen21_vae import Qwen21Vae

    index = loading.model_index(folder)
    transformer = manager.module(
        folder / "transformer",
        *index.get("transformer", ("diffusers", "QwenImage21Transformer2DModel")),
    )
    raw_vae = manager.module(
        folder / "vae", *index.get("vae", ("diffusers", "AutoencoderKLQwenImage21"))
    )
    te = manager.module(
        folder / "text_encoder",
        *index.get("text_encoder", ("transformers", "Qwen3VLForConditionalGeneration")),
    )
    processor = manager.module(
        folder / "processor", *index.get("processor", ("transformers", "Qwen3VLProcessor"))
    )
    tokenizer = getattr(processor, "tokenizer", processor)
    vae = manager.load_module((str(folder.resolve()), "qwen21-vae"), lambda: Qwen21Vae(raw_vae))
    family = qwen_image21.QWEN_IMAGE21
    sched = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    vae_handle = VaeHandle(name, vae, manager)
    model = ModelHandle(
        name, transformer, dict(sched), family.latent.factor, manager, vae=vae_handle, family=family
    )
    part = TextEncoderPart("qwen3vl", tokenizer, te, kind="qwen3vl")
    return model, ClipHandle(name, (part,), manager, family=family), vae_handle
