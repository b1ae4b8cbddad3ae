"""The HunyuanVideo 1.5 family, run as an image model (one frame): Capybara v0.1 and the
HunyuanVideo 1.5 text-to-video / image-to-video transformers (diffusers'
HunyuanVideo15Transformer3DModel: 54 double-stream blocks over the joint sequence of image
tokens and [SigLIP image tokens | byT5 glyph tokens | Qwen2.5-VL tokens]) on the 16x VAE's
32-channel latents (AutoencoderKLHunyuanVideo15, one frame decoded alone); flow matching.

As data: the latent format (scaling 1.03682, no shift, factor 16), model sampling ("flow",
shift 7 as ComfyUI's Capybara templates set it with ModelSamplingSD3), the two text parts
(Qwen2.5-VL and byT5), HunyuanVideo15Pipeline's prompt template, and how a diffusion-model
file (Tencent's original key layout, which ComfyUI's repackaged files keep) is recognised and
sized. The key renames live in easel.models.hunyuan15_keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import LatentFormat, TextPart
from easel.models.families.flux import FlowFamily
from easel.models.families.qwen_image import QWEN_TEXT

HUNYUAN15_LATENT = LatentFormat(channels=32, scaling_factor=1.03682, shift_factor=0.0, factor=16)
BYT5_TEXT = TextPart("byt5", pad_token="<pad>", hidden_act="gelu_new")
# HunyuanVideo15Pipeline's system message (its `system_message`, byte for byte: the pipeline's
# source continues the string over lines, so the spaces of the indentation are part of it).
SYSTEM_MESSAGE = (
    "You are a helpful assistant. Describe the video by detailing the following aspects: "
    "        1. The main content and theme of the video. "
    "        2. The color, shape, size, texture, quantity, text, and spatial relationships of "
    "the objects. "
    "        3. Actions, events, behaviors temporal relationships, physical movement changes of "
    "the objects. "
    "        4. background environment, light, style and atmosphere. "
    "        5. camera angles, movements, and transitions used in the video."
)
# Qwen2's chat template as the pipeline applies it (system, user, generation prompt); the
# tokens before the prompt (108 with Qwen's tokenizer, the pipeline's
# `prompt_template_encode_start_idx`) are dropped from the hidden states.
PROMPT_TEMPLATE = (
    "<|im_start|>system\n" + SYSTEM_MESSAGE + "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
QWEN_LAYER = -3  # hidden_states[-(num_hidden_layers_to_skip + 1)], two layers skipped
MAX_TOKENS = 1000  # the pipeline's tokenizer_max_length: prompt tokens kept
BYT5_MAX_TOKENS = 256  # tokenizer_2_max_length
VISION_TOKENS = 729  # SigLIP so400m-patch14-384's tokens per image
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 7.0,
    "use_dynamic_shifting": False,
}
PREFIXES = ("model.diffusion_model.", "model.", "")
PROBES = (
    "byt5_in.fc1.weight",
    "cond_type_embedding.weight",
    "txt_in.individual_token_refiner.blocks.0.norm1.weight",
)


@dataclass(frozen=True)
class Hunyuan15Family(FlowFamily):
    """HunyuanVideo 1.5 (one frame): its own network adapter and text encoding."""

    network: str = "hunyuan15"
    patch: int = 1
    text_encoding: str = "easel.models.hunyuan15_text"


HUNYUAN15 = Hunyuan15Family(
    "hunyuan-video-1.5",
    "HunyuanVideo 1.5 / Capybara",
    HUNYUAN15_LATENT,
    "flow",
    (QWEN_TEXT, BYT5_TEXT),
    pipeline_class="HunyuanVideo15Pipeline",
    scheduler_config=SCHEDULER,
)
FAMILIES = (HUNYUAN15,)


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a HunyuanVideo 1.5 transformer's (original) keys start in `state`, or None."""
    for prefix in PREFIXES:
        if all(prefix + probe in state for probe in PROBES):
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[Hunyuan15Family, tuple[str, ...]] | None:
    """(family, evidence) of a HunyuanVideo 1.5 transformer, or None."""
    if prefix_of(state) is None:
        return None
    return HUNYUAN15, ("double_blocks with byt5_in and cond_type_embedding (HunyuanVideo 1.5)",)


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """The rotary axes (time, height, width) of heads of `head_dim` channels: (16, 56, 56) for
    the released models' 128; an eighth and the halves of the rest otherwise."""
    time = head_dim // 8
    side = (head_dim - time) // 2
    if time % 2 or side % 2 or time + 2 * side != head_dim:
        raise ValueError(f"heads of {head_dim} channels do not split into HunyuanVideo's rope axes")
    return time, side, side


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """HunyuanVideo15Transformer3DModel's config read off the (original) shapes."""
    from easel.models.hunyuan15_keys import original_names

    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no HunyuanVideo 1.5 transformer (double_blocks, byt5_in) in the file")
    named = original_names({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})

    def dims(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in named[key].shape)

    hidden, in_channels, patch_t, patch, _ = dims("img_in.proj.weight")
    head_dim = dims("double_blocks.0.img_attn_q_norm.weight")[0]
    if hidden % head_dim:
        raise ValueError(f"width {hidden} is not heads of {head_dim}")
    mlp = dims("double_blocks.0.img_mlp.fc1.weight")[0]
    if dims("byt5_in.fc1.weight")[0] != 2048:
        raise ValueError("the byT5 projection is not 2048 wide (diffusers' HunyuanVideo 1.5)")
    return {
        "in_channels": in_channels,
        "out_channels": dims("final_layer.linear.weight")[0] // (patch_t * patch * patch),
        "num_attention_heads": hidden // head_dim,
        "attention_head_dim": head_dim,
        "num_layers": _count(named, "double_blocks."),
        "num_refiner_layers": _count(named, "txt_in.individual_token_refiner.blocks."),
        "mlp_ratio": mlp / hidden,
        "patch_size": patch,
        "patch_size_t": patch_t,
        "text_embed_dim": dims("txt_in.input_embedder.weight")[1],
        "text_embed_2_dim": dims("byt5_in.fc1.weight")[1],
        "image_embed_dim": dims("vision_in.proj.1.weight")[1],
        "rope_axes_dim": rope_axes(head_dim),
        "use_meanflow": "time_r_in.mlp.0.weight" in named,
    }
