"""Qwen-Image modules from ComfyUI's split files (diffusion_models/, text_encoders/, vae/) and
from a diffusers QwenImagePipeline folder.

- The transformer file holds diffusers' own keys (diffusers' single-file mapping for
  QwenImageTransformer2DModel is the identity), with or without `model.diffusion_model.`;
  the config is read off the shapes (easel.models.families.qwen_image).
- The text encoder file is Qwen2.5-VL in the original Hugging Face layout (`model.layers.*`,
  `model.embed_tokens`, `model.norm`, `visual.*`), as ComfyUI's qwen_2.5_vl_7b files are; it
  is loaded as transformers' Qwen2_5_VLForConditionalGeneration (`model.language_model.*`,
  `model.visual.*`) with its config read off the shapes.
- Modules are built with accelerate's `init_empty_weights` (parameters on the meta device, then
  assigned from the file) rather than easel.models.state_dicts.load_into: both models compute
  rotary tables in their constructors (plain tensors, or non-persistent buffers) that must be
  real, not meta.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import qwen_image
from easel.models.families.recognise import summarise
from easel.models.flux_loading import hold, storage_dtype, stored_as
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart, VaeHandle
from easel.models.transformer_files import fitted, no_single_file

VISION_HEAD_DIM = 80  # Qwen2.5-VL's vision tower: heads of 80 channels (1280 = 16 x 80)
TEXT_HEAD_DIM = 128  # Qwen2.5-VL-7B's language model: heads of 128 (3584 = 28 x 128)
MROPE_SECTION = (16, 24, 24)  # Qwen2.5-VL's multimodal rope sections (sum: head_dim / 2)
FULL_ATTENTION_EVERY = 8  # vision blocks 7, 15, 23, 31 attend globally, the others in windows


def build_module(cls: Any, config: Any, state: Mapping[str, Any], dtype: Any, what: str) -> Any:
    """`cls(config)` with its parameters assigned from `state` (no random initialisation);
    buffers and tensors computed by the constructor stay real. Missing keys are an error,
    except an LM head (only hidden states are used)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        module = cls.from_config(config) if isinstance(config, dict) else cls(config)
    expected = dict(module.state_dict())
    loaded = {}
    for key, value in state.items():
        if key in expected:
            loaded[key] = value.to(dtype) if value.is_floating_point() else value
    missing = [k for k in expected if k not in loaded and not k.startswith("lm_head.")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ModelError(
            f"the {what} weights do not match its shape: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    module.load_state_dict(loaded, strict=False, assign=True)
    if "lm_head.weight" in expected and "lm_head.weight" not in loaded:
        import torch

        module.lm_head = torch.nn.Identity()  # only the hidden states are read
    for name, param in list(module.named_parameters()):
        if param.is_meta:
            raise ModelError(f"the {what} has no value for {name}")
    return module.eval().requires_grad_(False)


# -- the transformer ----------------------------------------------------------------------------
def transformer_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The transformer's keys without their prefix and ComfyUI's marker key."""
    prefix = qwen_image.prefix_of(state)
    if prefix is None:
        raise ModelError("no Qwen-Image transformer (txt_norm, transformer_blocks) in the file")
    return {
        k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and not k.endswith(qwen_image.ZERO_COND_MARKER)
    }


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A QwenImageTransformer2DModel from a ComfyUI-layout state dict."""
    from diffusers import QwenImageTransformer2DModel

    def build() -> Any:
        config = qwen_image.transformer_config(state)
        return build_module(
            QwenImageTransformer2DModel,
            config,
            transformer_state(state),
            dtype,
            "Qwen-Image transformer",
        )

    return fitted(path, "a Qwen-Image transformer", build)


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are a Qwen-Image transformer's (family_files)."""
    return qwen_image.recognise(state) is not None


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from a diffusion-model-only file (ComfyUI's UNETLoader); fp8 weight dtypes keep
    the weights in fp8 and compute in the manager's dtype (diffusers' layerwise casting).
    Quantised files (ComfyUI's `*_int8*`, e.g. Marigold v2's int8 ConvRot Qwen-Image-Edit)
    are dequantised through comfy-kitchen, as for Z-Image."""
    from easel.models.lumina_loading import read_weights

    storage = storage_dtype(weight_dtype)

    def load() -> Any:
        state = read_weights(path, manager)
        if qwen_image.recognise(state) is None:
            raise ModelError(f"{path.name} is not a Qwen-Image transformer ({summarise(state)})")
        module = build_transformer(state, manager.dtype, path)
        return stored_as(module, storage, manager.dtype)

    module = manager.load_module((str(path.resolve()), f"qwen-transformer:{weight_dtype}"), load)
    return model_handle(name, module, manager)


def model_handle(name: str, module: Any, manager: Any, vae: VaeHandle | None = None) -> ModelHandle:
    family = qwen_image.QWEN_IMAGE
    return ModelHandle(
        name,
        module,
        dict(family.scheduler_config),
        family.latent.factor,
        manager,
        vae=vae,
        family=family,
    )


# -- the text encoder (Qwen2.5-VL) --------------------------------------------------------------
TEXT_RENAMES = (
    ("model.layers.", "model.language_model.layers."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.norm.", "model.language_model.norm."),
    ("visual.", "model.visual."),
)
LAYER_PROBE = "model.layers.0.self_attn.q_proj.weight"


def is_qwen25_vl(state: Mapping[str, Any]) -> bool:
    """Whether a text encoder file is Qwen2.5-VL in the original layout (language model with
    q/k/v biases, as Qwen2.5; the vision tower may be absent)."""
    return LAYER_PROBE in state and "model.layers.0.self_attn.q_proj.bias" in state


def transformers_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """Original Qwen2.5-VL keys -> transformers 5's Qwen2_5_VLForConditionalGeneration keys
    (the renames transformers applies itself when it loads a hub checkpoint)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        for old, replacement in TEXT_RENAMES:
            if key.startswith(old):
                new = replacement + key[len(old) :]
                break
        out[new] = value
    return out


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(re.escape(head) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def text_config(state: Mapping[str, Any], tokenizer: Any) -> Any:
    """Qwen2_5_VLConfig read off the shapes (original keys); the special token ids from the
    tokenizer. Heads: 128 channels in the language model, 80 in the vision tower (every
    Qwen2.5-VL size)."""
    from transformers import Qwen2_5_VLConfig

    vocab, hidden = (int(n) for n in state["model.embed_tokens.weight"].shape)
    q = int(state[LAYER_PROBE].shape[0])
    kv = int(state["model.layers.0.self_attn.k_proj.weight"].shape[0])
    text = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": int(state["model.layers.0.mlp.gate_proj.weight"].shape[0]),
        "num_hidden_layers": _count(state, "model.layers."),
        "num_attention_heads": q // TEXT_HEAD_DIM,
        "num_key_value_heads": kv // TEXT_HEAD_DIM,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 128000,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": list(MROPE_SECTION),
        },
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
    }
    if q % TEXT_HEAD_DIM or kv % TEXT_HEAD_DIM:
        raise ModelError(
            f"attention widths {q} / {kv} are not heads of {TEXT_HEAD_DIM}: not Qwen2.5-VL"
        )
    config: dict[str, Any] = {"text_config": text, "tie_word_embeddings": False}
    if "visual.patch_embed.proj.weight" in state:
        width, channels, temporal, patch, _ = (
            int(n) for n in state["visual.patch_embed.proj.weight"].shape
        )
        merge_in = int(state["visual.merger.mlp.0.weight"].shape[1])
        depth = _count(state, "visual.blocks.")
        config["vision_config"] = {
            "depth": depth,
            "hidden_size": width,
            "in_channels": channels,
            "temporal_patch_size": temporal,
            "patch_size": patch,
            "spatial_merge_size": round((merge_in // width) ** 0.5),
            "intermediate_size": int(state["visual.blocks.0.mlp.gate_proj.weight"].shape[0]),
            "num_heads": max(1, width // VISION_HEAD_DIM),
            "out_hidden_size": int(state["visual.merger.mlp.2.weight"].shape[0]),
            "fullatt_block_indexes": [
                i for i in range(depth) if i % FULL_ATTENTION_EVERY == FULL_ATTENTION_EVERY - 1
            ],
        }
    for name, token in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            config[name] = int(token_id)
    return Qwen2_5_VLConfig(**config)


def build_text_encoder(path: Path, state: Mapping[str, Any], tokenizer: Any, dtype: Any) -> Any:
    """transformers' Qwen2_5_VLForConditionalGeneration from an original-layout file (the
    language model alone, Qwen2_5_VLTextModel, when the file has no vision tower)."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLTextModel

    def build() -> Any:
        config = text_config(state, tokenizer)
        if "visual.patch_embed.proj.weight" in state:
            converted = transformers_keys(state)
            return build_module(
                Qwen2_5_VLForConditionalGeneration, config, converted, dtype, "Qwen2.5-VL"
            )
        text_only = {
            k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")
        }
        return build_module(
            Qwen2_5_VLTextModel, config.text_config, text_only, dtype, "Qwen2.5-VL language model"
        )

    return fitted(path, "a Qwen2.5-VL text encoder", build)


def qwen_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIPLoader type qwen_image: one Qwen2.5-VL file (ComfyUI's qwen_2.5_vl_7b*)."""
    from easel.models.qwen_tokenizer import qwen_tokenizer
    from easel.models.transformer_files import read_weights

    (path,) = paths
    key = str(path.resolve())
    from easel.models import family_files, qwen21_loading

    if qwen21_loading.is_qwen3_vl(family_files.keys_of(path, manager)):  # Qwen-Image 2.1's
        return qwen21_loading.qwen21_clip(name, paths, manager)

    def load() -> Any:
        state = read_weights(path, manager)
        if not is_qwen25_vl(state):
            raise ModelError(
                f"{path.name} is not a Qwen2.5-VL text encoder ({summarise(state)}); type "
                "qwen_image takes ComfyUI's qwen_2.5_vl_7b file (model.layers.*, visual.*)"
            )
        tokenizer = manager.load_module(
            ("qwen25-tokenizer", "qwen25"),
            lambda: qwen_tokenizer(checkpoint=path.name, roots=manager.roots),
        )
        return build_text_encoder(path, state, tokenizer, manager.dtype), tokenizer

    model, tokenizer = manager.load_module((key, "qwen25_vl"), load)
    hold(manager, key, {"text_encoder:qwen": model})
    part = TextEncoderPart("qwen", tokenizer, model, kind="qwen")
    return ClipHandle(name, (part,), manager, family=qwen_image.QWEN_IMAGE)


# -- diffusers folders ----------------------------------------------------------------------------
# ComfyUI has no single-file Qwen-Image checkpoint layout: none is read as one.
is_checkpoint, single_file_checkpoint = no_single_file(
    "Qwen-Image comes as split files: DiffusionModelLoader, TextEncoderLoader type qwen_image "
    "and VAELoader"
)


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a Qwen-Image pipeline's (easel.models.family_files)."""
    import json

    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    name = str(index.get("_class_name", ""))
    return name.startswith("QwenImage") and not name.startswith("QwenImage21")


def folder_checkpoint(
    name: str, folder: Path, manager: Any
) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """A diffusers QwenImagePipeline (or Edit) folder: transformer/, text_encoder/,
    tokenizer/, vae/ (AutoencoderKLQwenImage), scheduler/."""
    from easel.models import loading
    from easel.models.qwen_vae import QwenVae

    index = loading.model_index(folder)
    transformer = manager.module(
        folder / "transformer",
        *index.get("transformer", ("diffusers", "QwenImageTransformer2DModel")),
    )
    raw_vae = manager.module(
        folder / "vae", *index.get("vae", ("diffusers", "AutoencoderKLQwenImage"))
    )
    te = manager.module(
        folder / "text_encoder",
        *index.get("text_encoder", ("transformers", "Qwen2_5_VLForConditionalGeneration")),
    )
    tok = manager.module(
        folder / "tokenizer", *index.get("tokenizer", ("transformers", "Qwen2Tokenizer"))
    )
    vae = manager.load_module((str(folder.resolve()), "qwen-vae"), lambda: QwenVae(raw_vae))
    family: Any = qwen_image.QWEN_IMAGE
    sched = loading.scheduler_config(folder / "scheduler") or dict(family.scheduler_config)
    if loading.read_json(folder / "model_index.json").get("_class_name") == (
        "QwenImageLayeredPipeline"
    ):  # its layered latents; the fixed shift of ComfyUI's templates (easel.models.qwen_layered)
        from easel.models.qwen_layered import QWEN_IMAGE_LAYERED

        family = QWEN_IMAGE_LAYERED
        sched = dict(family.scheduler_config)
    vae_handle = VaeHandle(name, vae, manager)
    model = ModelHandle(
        name, transformer, dict(sched), family.latent.factor, manager, vae=vae_handle, family=family
    )
    part = TextEncoderPart("qwen", tok, te, kind="qwen")
    return model, ClipHandle(name, (part,), manager, family=family), vae_handle
