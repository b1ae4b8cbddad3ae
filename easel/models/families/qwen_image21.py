"""The Qwen-Image 2.1 family (and its Turbo checkpoint): a single-stream, block-causal
flow-matching transformer on 64-channel latents consumed unpatched (one token per latent pixel,
16x16 image pixels), conditioned on Qwen3-VL's last decoder-layer hidden states (the system
prompt's tokens dropped), decoded by a 16x RGBA VAE (diffusers' AutoencoderKLQwenImage21).

As data: the latent format (latents kept normalised per channel by the VAE handle, as
QwenImage21Pipeline samples them: a scalar scaling of 1), model sampling ("flow", with the
pipeline's dynamic shift: `calculate_shift` between 256 and 4096 tokens, mu 0.5 to 1.15), the
text part, and how a diffusion-model file in ComfyUI's layout (diffusers' keys, with or without
`model.diffusion_model.`, the SwiGLU gate and up projections fused as `img_mlp.gate_up`) is
recognised and sized.

Text and condition-image tokens are modulated from t = 0 (`causal_condition`), so their keys and
values do not change between steps: the network adapter caches them after the first step, as the
pipeline's `use_kv_cache` and ComfyUI's prefix cache do (`kv_cache`: "auto" on, "off" off; the
QwenImage21Cache node sets it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import LatentFormat, TextPart
from easel.models.families.flux import FlowFamily

# Latents are kept normalised ((z - latents_mean) / latents_std, the VAE config's): scaling 1.
QWEN21_LATENT = LatentFormat(channels=64, scaling_factor=1.0, shift_factor=0.0, factor=16)

# QwenImage21Pipeline's schedule: FlowMatchEulerDiscreteScheduler with the mu of its
# calculate_shift (the fallbacks it reads when the scheduler config has none).
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "time_shift_type": "exponential",
    "invert_sigmas": False,
    "stochastic_sampling": False,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
}

QWEN3_TEXT = TextPart("qwen3vl", pad_token="<|endoftext|>", hidden_act="silu")
HEAD_DIM = 128  # the released transformer: heads of 128, rope axes (16, 56, 56)
ROPE_AXES = (16, 56, 56)

# QwenImage21Pipeline's prompt templates; the system message's tokens
# ("<|im_start|>system\n...<|im_end|>\n") are dropped from the hidden states.
SYSTEM_PROMPT = "Comprehend and analyze the provided prompt."
SYSTEM_MESSAGE = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
PROMPT_TEMPLATE = SYSTEM_MESSAGE + "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
IMAGE_TOKENS = "<|vision_start|><|image_pad|><|vision_end|>"
IMAGE_SLOT_TOKENS = 4  # one vision slot (a merged 32x32 pixel patch) = 2x2 latent tokens


def image_prefix(count: int) -> str:
    """The user turn's image placeholders before the prompt, as the pipeline writes them."""
    return " ".join(f"<image{i + 1}>{IMAGE_TOKENS}" for i in range(count))


@dataclass(frozen=True)
class QwenImage21Family(FlowFamily):
    """A flow family whose prompts are encoded by a module of its own (`text_encoding`) and
    whose network caches the condition's keys and values (`kv_cache`: "auto" or "off")."""

    text_encoding: str = "easel.models.qwen21_text"
    kv_cache: str = "auto"


QWEN_IMAGE21 = QwenImage21Family(
    "qwen-image-2.1",
    "Qwen-Image 2.1",
    QWEN21_LATENT,
    "flow",
    (QWEN3_TEXT,),
    pipeline_class="QwenImage21Pipeline",
    scheduler_config=SCHEDULER,
    network="qwen_image21",
    patch=1,
)

FAMILIES = (QWEN_IMAGE21,)

PREFIXES = ("model.diffusion_model.", "")


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Qwen-Image 2.1 transformer's keys start in `state`, or None when there is none:
    its shared `modulation` and text projection's norm (`txt_in.text_norm`)."""
    for prefix in PREFIXES:
        if prefix + "modulation.1.weight" in state and prefix + "txt_in.text_norm.weight" in state:
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[QwenImage21Family, tuple[str, ...]] | None:
    """(family, evidence) of a Qwen-Image 2.1 transformer, or None."""
    if prefix_of(state) is None:
        return None
    return QWEN_IMAGE21, ("modulation / txt_in.text_norm (Qwen-Image 2.1 transformer)",)


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """QwenImage21Transformer2DModel's config read off the shapes: width and input channels from
    img_in, text width from txt_in, depth from the block indices, output channels from proj_out,
    the MLP ratio from the fused (or split) SwiGLU, heads from the q norm."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Qwen-Image 2.1 transformer (modulation, txt_in.text_norm) in the file")
    hidden, channels = (int(n) for n in state[prefix + "img_in.weight"].shape)
    head = int(state[prefix + "transformer_blocks.0.attn.norm_q.weight"].shape[0])
    if hidden % head:
        raise ValueError(f"width {hidden} is not a whole number of heads of {head}")
    fused = prefix + "transformer_blocks.0.img_mlp.gate_up.weight"
    if fused in state:
        mlp = int(state[fused].shape[0]) // 2
    else:
        mlp = int(state[prefix + "transformer_blocks.0.img_mlp.proj.weight"].shape[0])
    if mlp % hidden:
        raise ValueError(f"MLP width {mlp} is not a multiple of the width {hidden}")
    axes = list(ROPE_AXES) if head == HEAD_DIM else _axes(head)
    return {
        "patch_size": 1,
        "in_channels": channels,
        "out_channels": int(state[prefix + "proj_out.weight"].shape[0]),
        "num_layers": _count(state, prefix + "transformer_blocks."),
        "attention_head_dim": head,
        "num_attention_heads": hidden // head,
        "context_in_dim": int(state[prefix + "txt_in.in_layer.weight"].shape[1]),
        "mlp_ratio": mlp // hidden,
        "axes_dims_rope": axes,
    }


def _axes(head: int) -> list[int]:
    """Rope axes for heads other than the released 128: the released split's proportions
    (1/8 frames, the rest halved between rows and columns), each even."""
    frames = max(2, (head // 8) // 2 * 2)
    rows = (head - frames) // 4 * 2
    return [frames, rows, head - frames - rows]
