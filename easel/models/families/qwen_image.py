"""The Qwen-Image family (and its Edit variants): a 60-block MMDiT flow-matching transformer on
16-channel latents packed 2x2, conditioned on the last hidden states of Qwen2.5-VL-7B (its
system-prompt template's first tokens dropped), decoded by the Qwen VAE (the Wan 2.1 video VAE,
one frame).

As data: the latent format (the VAE normalises latents per channel with `LATENTS_MEAN` /
`LATENTS_STD`; Easel keeps latents normalised, so the family's scalar scaling is 1 and the VAE
handle does the per-channel part, see easel.models.qwen_vae), model sampling ("flow", with
Qwen-Image's diffusers scheduler config: dynamic shift, mu 0.5 at 256 tokens up to 0.9 at
8192, sigmas stretched to end at 0.02), the text part, and how a diffusion-model file in
ComfyUI's layout (diffusers' own key names, with or without `model.diffusion_model.`) is
recognised and sized.

Qwen-Image and Qwen-Image-Edit (2508, 2509, 2511) share the architecture: an Edit model is told
by what it is given (reference latents), not by its weights. Edit-2511's files carry ComfyUI's
`__index_timestep_zero__` marker: its reference tokens get the timestep 0 (diffusers'
`zero_cond_t`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import LatentFormat, TextPart
from easel.models.families.flux import FlowFamily

# Qwen-Image's VAE (diffusers' AutoencoderKLQwenImage defaults = Qwen/Qwen-Image vae/config.json)
LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip
# Latents are kept normalised ((z - mean) / std per channel, as QwenImagePipeline samples them):
# the family's scalar scaling is the identity.
QWEN_LATENT = LatentFormat(channels=16, scaling_factor=1.0, shift_factor=0.0, factor=8)

# Qwen/Qwen-Image scheduler/scheduler_config.json
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 0.9,
    "base_image_seq_len": 256,
    "max_image_seq_len": 8192,
    "shift_terminal": 0.02,
    "time_shift_type": "exponential",
    "invert_sigmas": False,
    "stochastic_sampling": False,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
}

QWEN_TEXT = TextPart("qwen", pad_token="<|endoftext|>", hidden_act="silu")
HEAD_DIM = 128  # every Qwen-Image transformer: heads of 128 channels, rope axes (16, 56, 56)
ROPE_AXES = (16, 56, 56)

# QwenImagePipeline's prompt template, whose tokens before the prompt (the system prompt and
# "<|im_start|>user\n") are dropped from the hidden states: 34 of Qwen's tokenizer (the
# pipeline's prompt_template_encode_start_idx); the Edit pipelines' template: 64.
PROMPT_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
PROMPT_DROP = 34
EDIT_TEMPLATE = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, "
    "texture, objects, background), then explain how the user's text instruction should alter "
    "or modify the image. Generate a new image that meets the user's requirements while "
    "maintaining consistency with the original input where appropriate.<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
EDIT_DROP = 64
IMAGE_TOKENS = "<|vision_start|><|image_pad|><|vision_end|>"
MAX_TOKENS = 1024  # QwenImagePipeline's tokenizer_max_length (after the dropped tokens)


@dataclass(frozen=True)
class QwenImageFamily(FlowFamily):
    """A flow family whose prompts are encoded by a module of its own (`text_encoding`)."""

    text_encoding: str = "easel.models.qwen_text"


QWEN_IMAGE = QwenImageFamily(
    "qwen-image",
    "Qwen-Image",
    QWEN_LATENT,
    "flow",
    (QWEN_TEXT,),
    pipeline_class="QwenImagePipeline",
    scheduler_config=SCHEDULER,
    network="qwen_image",
)

FAMILIES = (QWEN_IMAGE,)

PREFIXES = ("model.diffusion_model.", "")
ZERO_COND_MARKER = "__index_timestep_zero__"  # ComfyUI's key for Edit-2511's zero_cond_t


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Qwen-Image transformer's keys start in `state`, or None when there is none."""
    for prefix in PREFIXES:
        if (
            prefix + "txt_norm.weight" in state
            and prefix + "transformer_blocks.0.img_mod.1.weight" in state
        ):
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[QwenImageFamily, tuple[str, ...]] | None:
    """(family, evidence) of a Qwen-Image transformer, or None."""
    if prefix_of(state) is None:
        return None
    return QWEN_IMAGE, ("txt_norm / transformer_blocks.*.img_mod (Qwen-Image transformer)",)


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """QwenImageTransformer2DModel's config read off the shapes (as ComfyUI's model detection
    does): width and input channels from img_in, text width from txt_in, depth from the block
    indices, output channels from proj_out (2x2 patches), heads of 128."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Qwen-Image transformer (txt_norm, transformer_blocks) in the file")
    img_in = tuple(state[prefix + "img_in.weight"].shape)
    hidden = int(img_in[0])
    head = int(state[prefix + "transformer_blocks.0.attn.norm_q.weight"].shape[0])
    if head != HEAD_DIM or hidden % HEAD_DIM:
        raise ValueError(
            f"heads of {head} channels and width {hidden}: Qwen-Image has heads of {HEAD_DIM}"
        )
    patch = 2
    return {
        "patch_size": patch,
        "in_channels": int(img_in[1]),
        "out_channels": int(state[prefix + "proj_out.weight"].shape[0]) // (patch * patch),
        "num_layers": _count(state, prefix + "transformer_blocks."),
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": int(state[prefix + "txt_in.weight"].shape[1]),
        "guidance_embeds": False,
        "axes_dims_rope": list(ROPE_AXES),
        "zero_cond_t": prefix + ZERO_COND_MARKER in state or ZERO_COND_MARKER in state,
        "use_additional_t_cond": prefix + "time_text_embed.addition_t_embedding.weight" in state,
    }
