"""The JoyImage Edit family (jdopensource/JoyAI-Image-Edit): a dual-stream diffusion transformer
(diffusers' JoyImageEditTransformer3DModel) on the Wan 2.1 VAE's 16-channel latents in 1x2x2
patches, conditioned on Qwen3-VL-8B's last decoder layer (before its final norm), which also
sees the reference images; the references' latents go beside the image being made as more
frames. Flow matching.

As data: the latent format (the Wan 2.1 / Qwen-Image VAE's per-channel normalisation, done by
easel.models.qwen_vae: a scalar scaling of 1), model sampling ("flow", a fixed shift of 1.5, the
scheduler of JoyAI's own ComfyUI nodes), the text part, and how ComfyUI's diffusion-model file
(diffusers' own keys) is recognised and sized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FlowFamily
from easel.models.families.qwen_image import QWEN_LATENT

# JoyImageEditPipeline's templates: a text prompt, and a prompt with reference images (one
# vision block per image before the prompt, as ComfyUI's JoyImage tokenizer writes them).
SYSTEM = (
    "<|im_start|>system\n \\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
)
TEXT_TEMPLATE = SYSTEM + "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
VISION_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"
# the tokens dropped from the hidden states: the system turn and the user turn's <|im_start|>
# (34 with Qwen's tokenizer, the pipeline's prompt_template_encode_start_idx)
DROPPED = SYSTEM + "<|im_start|>"
MAX_TOKENS = 2048  # the pipeline's text_token_max_length (text-only prompts)
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 1.5,
    "use_dynamic_shifting": False,
}
JOY_TEXT = TextPart("qwen3vl", layer=-1, layer_norm=False, pad_token="<|endoftext|>")
PROBE = "double_blocks.0.img_mod.modulate_table"
TIME_PROBE = "condition_embedder.time_proj.weight"
PREFIXES = ("model.diffusion_model.", "transformer.", "")
RELEASED_ROPE = {128: [16, 56, 56]}  # heads of 128: the released model's axes


@dataclass(frozen=True)
class JoyImageFamily(FlowFamily):
    """JoyImage Edit: its own network adapter and text encoding."""

    network: str = "joyimage"
    text_encoding: str = "easel.models.joyimage_text"


JOYIMAGE = JoyImageFamily(
    "joyimage-edit",
    "JoyImage Edit",
    QWEN_LATENT,
    "flow",
    (JOY_TEXT,),
    pipeline_class="JoyImageEditPipeline",
    scheduler_config=SCHEDULER,
)
FAMILIES = (JOYIMAGE,)


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a JoyImage transformer's keys start in `state`, or None."""
    for prefix in PREFIXES:
        if prefix + PROBE in state and prefix + TIME_PROBE in state:
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[JoyImageFamily, tuple[str, ...]] | None:
    """(family, evidence) of a JoyImage transformer, or None."""
    if prefix_of(state) is None:
        return None
    return JOYIMAGE, ("double_blocks with modulate_table and condition_embedder (JoyImage)",)


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def rope_axes(head_dim: int) -> list[int]:
    """The rotary axes (frames, height, width) of heads of `head_dim` channels: the released
    (16, 56, 56) for 128, an eighth for frames and the rest halved otherwise."""
    if head_dim in RELEASED_ROPE:
        return list(RELEASED_ROPE[head_dim])
    frames = head_dim // 8
    side = (head_dim - frames) // 2
    if frames % 2 or side % 2 or frames + 2 * side != head_dim:
        raise ValueError(f"heads of {head_dim} channels do not split into JoyImage's rope axes")
    return [frames, side, side]


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """JoyImageEditTransformer3DModel's config read off the shapes."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no JoyImage transformer (double_blocks with modulate_table)")

    def dims(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in state[prefix + key].shape)

    hidden, channels, *patch = dims("img_in.weight")
    head_dim = dims("double_blocks.0.attn.img_attn_q_norm.weight")[0]
    patch_size = [int(n) for n in patch]
    out = dims("proj_out.weight")[0] // (patch_size[0] * patch_size[1] * patch_size[2])
    return {
        "patch_size": patch_size,
        "in_channels": channels,
        "out_channels": out,
        "hidden_size": hidden,
        "num_attention_heads": hidden // head_dim,
        "text_dim": dims("condition_embedder.text_embedder.linear_1.weight")[1],
        "mlp_width_ratio": dims("double_blocks.0.img_mlp.net.0.proj.weight")[0] / hidden,
        "num_layers": _count(state, prefix + "double_blocks."),
        "rope_dim_list": rope_axes(head_dim),
    }
