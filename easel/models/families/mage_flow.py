"""The Mage-Flow family (Microsoft's Mage, MIT): a 12-layer variant of Qwen-Image's double-stream
transformer on the Mage-VAE's raw latents (128 channels at 1/16 of the image, one token per
latent pixel: patch size 1), conditioned on Qwen3-VL-4B's last hidden state (final norm
applied) with the chat template's system turn dropped. The edit models see their reference
images twice: as vision tokens in the prompt and as reference latents on the RoPE frame axis.

As data: the latent format (raw Mage-VAE latents: no scaling, no shift, no batch-norm), model
sampling ("flow", the constant shift 6.0 of Mage's scheduler and of ComfyUI's model config),
the text part, the chat templates, and how a diffusion-model file is recognised and sized.

There is no reference pipeline: no library (diffusers 0.42, transformers) has Mage-Flow. The
transformer is built from diffusers' Qwen-Image pieces (easel.models.mage_transformer), the
Mage-VAE is written here (easel.models.mage_vae); both follow ComfyUI's `comfy/ldm/mage_flow`.

Assumptions (ComfyUI's model detection for Mage-Flow could not be read):
- A diffusion-model file is Mage-Flow's when it has Qwen-Image's keys (`txt_norm`,
  `transformer_blocks.N.img_mod`) and its image input takes 128 channels (one latent pixel of
  the Mage-VAE); Qwen-Image's takes 64 (16 channels in 2x2 patches).
- Heads are 128 wide, RoPE axes (16, 56, 56) scaled to the head, theta 10000 (ComfyUI's
  MageFlowTransformer2DModel defaults; no shape shows them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from easel.models.families.base import LatentFormat, TextPart
from easel.models.families.flux import FlowFamily

SHIFT = 6.0
LATENT_CHANNELS = 128
FACTOR = 16
HEAD_DIM = 128
ROPE_AXES = (16, 56, 56)
ROPE_THETA = 10000

# Raw Mage-VAE latents: ComfyUI gives Mage-Flow Flux.2's latent format (128 channels, 16x,
# scale 1, shift 0); Easel's own Flux.2 space is batch-norm normalised, so Mage has its own.
MAGE_LATENT = LatentFormat(
    channels=LATENT_CHANNELS, scaling_factor=1.0, shift_factor=0.0, factor=FACTOR
)

SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": SHIFT,
    "use_dynamic_shifting": False,
}

# Mage's chat templates (its PROMPT_TEMPLATE; ComfyUI's comfy/text_encoders/mage_flow.py): the
# system turn and the user's opening are dropped from the hidden states.
T2I_SYSTEM = (
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial "
    "relationships of the objects and background:"
)
EDIT_SYSTEM = (
    "Describe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the "
    "image. Generate a new image that meets the user's requirements while maintaining "
    "consistency with the original input where appropriate."
)
TEMPLATE = (
    "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
VISION_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"
VL_LONG_EDGE = 384  # the images Qwen3-VL sees are cut to this long edge (Mage's training)

QWEN3VL_4B = TextPart(
    "qwen3vl", layer=-1, layer_norm=True, pad_token="<|endoftext|>", hidden_act="silu"
)


def image_prefix(count: int) -> str:
    """The user turn's start for `count` reference images: "Image 1: <vision>Image 2: ..."."""
    return "".join(f"Image {i + 1}: {VISION_BLOCK}" for i in range(count))


@dataclass(frozen=True)
class MageFlowFamily(FlowFamily):
    """Mage-Flow: prompts are encoded by `text_encoding` (easel.models.mage_text)."""

    text_encoding: str = "easel.models.mage_text"


MAGE_FLOW = MageFlowFamily(
    "mage-flow",
    "Mage-Flow",
    MAGE_LATENT,
    "flow",
    (QWEN3VL_4B,),
    # No library pipeline exists. LoRAs are read by Qwen-Image's pipeline: Mage-Flow's layers
    # have Qwen-Image's names, so its LoRA key converters fit (easel.models.lora_flow).
    pipeline_class="QwenImagePipeline",
    scheduler_config=SCHEDULER,
    network="mage_flow",
    patch=1,
)

FAMILIES = (MAGE_FLOW,)

PREFIXES = ("model.diffusion_model.", "")
SIGNATURE = ("txt_norm.weight", "img_in.weight", "transformer_blocks.0.img_mod.1.weight")


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Mage-Flow transformer's keys start in `state`, or None: Qwen-Image's keys with
    an image input of 128 channels."""
    for prefix in PREFIXES:
        if all(prefix + key in state for key in SIGNATURE):
            shape = tuple(state[prefix + "img_in.weight"].shape)
            if len(shape) == 2 and int(shape[1]) == LATENT_CHANNELS:
                return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[MageFlowFamily, tuple[str, ...]] | None:
    """(family, evidence) of a Mage-Flow transformer, or None."""
    if prefix_of(state) is None:
        return None
    return MAGE_FLOW, (
        "Qwen-Image double-stream keys with a 128-channel image input (Mage-Flow, patch 1)",
    )


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def rope_axes(head: int) -> tuple[int, int, int]:
    """(16, 56, 56) for heads of 128; for other widths the same proportions, in even numbers."""
    if head == HEAD_DIM:
        return ROPE_AXES
    frame = max(2, (head * ROPE_AXES[0] // HEAD_DIM) // 2 * 2)
    side = (head - frame) // 2 // 2 * 2
    return (head - 2 * side, side, side)


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """MageFlowTransformer2DModel's config read off the shapes (keys without prefix)."""
    hidden, channels = (int(n) for n in state["img_in.weight"].shape)
    head = int(state["transformer_blocks.0.attn.norm_q.weight"].shape[0])
    if hidden % head:
        raise ValueError(f"width {hidden} is not a whole number of heads of {head}")
    return {
        "in_channels": channels,
        "out_channels": int(state["proj_out.weight"].shape[0]),
        "num_layers": _count(state, "transformer_blocks."),
        "attention_head_dim": head,
        "num_attention_heads": hidden // head,
        "joint_attention_dim": int(state["txt_in.weight"].shape[1]),
        "axes_dims_rope": rope_axes(head),
    }


def family_of(config: Any) -> MageFlowFamily:
    """The family of a model (its config): a model on other than 128 channels keeps its own."""
    value = config.get("in_channels") if isinstance(config, Mapping) else config.in_channels
    channels = int(value or LATENT_CHANNELS)
    if channels == MAGE_FLOW.latent.channels:
        return MAGE_FLOW
    return replace(MAGE_FLOW, latent=replace(MAGE_FLOW.latent, channels=channels))
