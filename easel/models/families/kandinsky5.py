"""The Kandinsky 5 image family (kandinskylab/Kandinsky-5.0-T2I-Lite): a diffusion transformer
(diffusers' Kandinsky5Transformer3DModel: text blocks, then visual blocks with cross-attention)
on the Flux VAE's 16-channel latents in 1x2x2 patches, conditioned on Qwen2.5-VL-7B's last
hidden states and CLIP-L's pooled output; flow matching.

As data: the latent format, model sampling ("flow", shift 3 as ComfyUI's template sets it with
ModelSamplingSD3), the two text parts, and how ComfyUI's diffusion-model file
(`kandinsky5lite_t2i.safetensors`, whose keys are diffusers' own) is recognised and sized.

The latent format is the Flux VAE's scaling (0.3611) without its shift: the Kandinsky 5 code and
diffusers' Kandinsky5T2IPipeline decode `latents / scaling_factor` (ComfyUI gives the model
Flux.1's latent format, shift included; Easel follows the model's own code and diffusers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import LatentFormat
from easel.models.families.flux import FLUX_CLIP_L, FlowFamily
from easel.models.families.qwen_image import QWEN_TEXT

KANDINSKY5_LATENT = LatentFormat(channels=16, scaling_factor=0.3611, shift_factor=0.0, factor=8)
PATCH = (1, 2, 2)
# Kandinsky5T2IPipeline's Qwen2.5-VL template; the tokens before the prompt (40 with Qwen's
# tokenizer, the pipeline's `prompt_template_encode_start_idx`) are dropped from the states.
PROMPT_TEMPLATE = (
    "<|im_start|>system\nYou are a prompt engineer. Describe the image by detailing the color, "
    "shape, size, texture, quantity, text, spatial relationships of the objects and "
    "background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>"
)
MAX_TOKENS = 512  # the pipeline's max_sequence_length: prompt tokens kept
CLIP_TOKENS = 77
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": False,
}
PROBE = "visual_transformer_blocks.0.visual_modulation.out_layer.weight"
TEXT_PROBE = "text_transformer_blocks.0.text_modulation.out_layer.weight"
PREFIXES = ("model.diffusion_model.", "transformer.", "")


@dataclass(frozen=True)
class Kandinsky5Family(FlowFamily):
    """Kandinsky 5 (image): its own network adapter and text encoding."""

    network: str = "kandinsky5"
    text_encoding: str = "easel.models.kandinsky5_text"


KANDINSKY5 = Kandinsky5Family(
    "kandinsky5-image",
    "Kandinsky 5 (image)",
    KANDINSKY5_LATENT,
    "flow",
    (QWEN_TEXT, FLUX_CLIP_L),
    pipeline_class="Kandinsky5T2IPipeline",
    scheduler_config=SCHEDULER,
)
FAMILIES = (KANDINSKY5,)


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Kandinsky 5 transformer's keys start in `state`, or None."""
    for prefix in PREFIXES:
        if prefix + PROBE in state and prefix + TEXT_PROBE in state:
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[Kandinsky5Family, tuple[str, ...]] | None:
    """(family, evidence) of a Kandinsky 5 transformer, or None."""
    if prefix_of(state) is None:
        return None
    return KANDINSKY5, ("text_transformer_blocks / visual_transformer_blocks (Kandinsky 5)",)


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """The rotary axes (time, height, width) of heads of `head_dim` channels: (32, 48, 48) for
    the image models' 128, (16, 24, 24) for the video Lite's 64; a quarter and three eighths
    each otherwise."""
    time = head_dim // 4
    if time % 2 or (head_dim - time) % 4:
        raise ValueError(f"heads of {head_dim} channels do not split into Kandinsky's rope axes")
    side = (head_dim - time) // 2
    return time, side, side


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Kandinsky5Transformer3DModel's config read off the shapes."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Kandinsky 5 transformer (visual_transformer_blocks) in the file")

    def dims(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in state[prefix + key].shape)

    patch = PATCH[0] * PATCH[1] * PATCH[2]
    out_visual = dims("out_layer.out_layer.weight")[0] // patch
    embed = dims("visual_embeddings.in_layer.weight")[1] // patch
    visual_cond = embed == 2 * out_visual + 1
    if not visual_cond and embed != out_visual:
        raise ValueError(f"visual input of {embed} channels, output of {out_visual}")
    head_dim = dims("visual_transformer_blocks.0.self_attention.query_norm.weight")[0]
    return {
        "in_visual_dim": out_visual,
        "out_visual_dim": out_visual,
        "in_text_dim": dims("text_embeddings.in_layer.weight")[1],
        "in_text_dim2": dims("pooled_text_embeddings.in_layer.weight")[1],
        "time_dim": dims("time_embeddings.out_layer.weight")[0],
        "patch_size": PATCH,
        "model_dim": dims("text_embeddings.in_layer.weight")[0],
        "ff_dim": dims("visual_transformer_blocks.0.feed_forward.in_layer.weight")[0],
        "num_text_blocks": _count(state, prefix + "text_transformer_blocks."),
        "num_visual_blocks": _count(state, prefix + "visual_transformer_blocks."),
        "axes_dims": rope_axes(head_dim),
        "visual_cond": visual_cond,
    }
