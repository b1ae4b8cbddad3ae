"""The Ideogram 4 family: a single-stream flow-matching transformer on the Flux.2 VAE's latents
(32 channels patchified 2x2: Easel's Flux.2 latent space, 128 channels at 1/16), conditioned on
the hidden states of 13 layers of Qwen3-VL-8B's language model side by side (the outputs of
layers 0, 3, ..., 33 and 35: 13 x 4096 = 53248 features per token). The text tokens and the
image tokens are one packed sequence with 3-axis interleaved rotary positions; guidance is
asymmetric: a second, unconditional transformer (`ideogram4_unconditional`) denoises the image
tokens alone, and the two velocities are blended (DualModelGuider).

As data: the latent format (Flux.2's), model sampling ("flow"; the noise levels come from
Ideogram4Scheduler, a logit-normal schedule, as Ideogram4Pipeline and ComfyUI make them), the
text part, and how a diffusion-model file in ComfyUI's key layout (`input_proj`,
`llm_cond_proj`, `t_embedding`, `embed_image_indicator`, `layers.N.attention.qkv`,
`final_layer`; with or without `model.diffusion_model.`) is recognised and sized.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FlowFamily
from easel.models.families.flux2 import FLUX2_LATENT

# Ideogram4Pipeline's QWEN3_VL_ACTIVATION_LAYERS are decoder-layer outputs; as indices into
# transformers' hidden_states (0: the embeddings) they are one more. ComfyUI taps the same.
TAP_LAYERS = (1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 36)
# Ideogram4Pipeline's chat template for a text-only user turn (ComfyUI's llama_template).
PROMPT_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"

# Per-token roles and the image positions' offset (diffusers' transformer_ideogram4).
LLM_TOKEN = 3
OUTPUT_IMAGE = 2
IMAGE_POSITION_OFFSET = 65536
ROPE_THETA = 5_000_000
MROPE_SECTION = (24, 20, 20)  # for heads of 256 (Ideogram 4's)

# The logit-normal schedule (Ideogram4Pipeline's `_logit_normal_sigmas`, ComfyUI's
# Ideogram4Scheduler): log-SNR clamps and the size the mean's resolution term is relative to.
LOGSNR_MIN = -15.0
LOGSNR_MAX = 18.0
BASE_PIXELS = 512 * 512

QWEN3VL_8B = TextPart(
    "qwen3vl", layer=-1, layer_norm=False, pad_token="<|endoftext|>", hidden_act="silu"
)

# No shift: the SIGMAS (Ideogram4Scheduler) are the schedule. KSampler's schedules use it.
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
}


@dataclass(frozen=True)
class Ideogram4Family(FlowFamily):
    """Ideogram 4: prompts are encoded by `text_encoding` (easel.models.ideogram4_text).
    `cfg_overrides` are CFGOverride's (cfg, start_percent, end_percent), applied by
    DualModelGuider in order (the last that covers a step wins)."""

    text_encoding: str = "easel.models.ideogram4_text"
    cfg_overrides: tuple[tuple[float, float, float], ...] = ()


IDEOGRAM4 = Ideogram4Family(
    "ideogram4",
    "Ideogram 4",
    FLUX2_LATENT,
    "flow",
    (QWEN3VL_8B,),
    pipeline_class="Ideogram4Pipeline",
    scheduler_config=SCHEDULER,
    network="ideogram4",
)

FAMILIES = (IDEOGRAM4,)

PREFIXES = ("model.diffusion_model.", "")
SIGNATURE = ("embed_image_indicator.weight", "t_embedding.mlp_in.weight", "input_proj.weight")


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where an Ideogram 4 transformer's keys start in `state`, or None."""
    for prefix in PREFIXES:
        if all(prefix + key in state for key in SIGNATURE) and (
            prefix + "layers.0.attention.qkv.weight" in state
            or prefix + "layers.0.attention.to_q.weight" in state
        ):
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[Ideogram4Family, tuple[str, ...]] | None:
    """(family, evidence) of an Ideogram 4 transformer (conditional or unconditional)."""
    if prefix_of(state) is None:
        return None
    return IDEOGRAM4, ("embed_image_indicator / t_embedding / layers.N.attention: Ideogram 4",)


def count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in state[key].shape)


def mrope_section(head_dim: int) -> tuple[int, int, int]:
    """The (t, h, w) rotary split: Ideogram 4's (24, 20, 20) for heads of 256, scaled for other
    head sizes (the tests' tiny models)."""
    if head_dim == 256:
        return MROPE_SECTION
    return tuple(head_dim * n // 256 for n in MROPE_SECTION)  # type: ignore[return-value]


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Ideogram4Transformer2DModel's config read off the shapes. An unconditional file without
    the text projection (`llm_cond_proj`) gets a one-feature one: its tokens are all image."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Ideogram 4 transformer (embed_image_indicator, layers) in the file")
    hidden, in_channels = _shape(state, prefix + "input_proj.weight")
    head_dim = _shape(state, prefix + "layers.0.attention.norm_q.weight")[0]
    if hidden % head_dim:
        raise ValueError(f"width {hidden} is not heads of {head_dim}")
    text_key = prefix + "llm_cond_proj.weight"
    features = _shape(state, text_key)[1] if text_key in state else 1
    return {
        "in_channels": in_channels,
        "num_layers": count(state, prefix + "layers."),
        "attention_head_dim": head_dim,
        "num_attention_heads": hidden // head_dim,
        "intermediate_size": _shape(state, prefix + "layers.0.feed_forward.w1.weight")[0],
        "adaln_dim": _shape(state, prefix + "adaln_proj.weight")[0],
        "llm_features_dim": features,
        "rope_theta": ROPE_THETA,
        "mrope_section": list(mrope_section(head_dim)),
        "norm_eps": 1e-5,
    }


def sigmas(steps: int, width: int, height: int, mu: float, std: float) -> list[float]:
    """Ideogram 4's logit-normal noise levels (steps + 1, descending, ending in 0): model time
    t = 1 - expit(mean + std * ndtri(u)) on u = linspace(0, 1, steps + 1), clamped to the
    log-SNR range, sigma = 1 - t reversed; the mean is `mu` plus half the log of the image's
    pixels over 512 x 512. Ideogram4Pipeline's `_logit_normal_sigmas` and ComfyUI's
    Ideogram4Scheduler (whose last level, clamped to about 6e-4, is set to 0 so the image is
    fully denoised, as the pipeline's scheduler appends 0)."""
    import torch

    mean = mu + 0.5 * math.log((width * height) / BASE_PIXELS)
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    t = 1.0 - torch.special.expit(mean + std * torch.special.ndtri(u))
    t_min = 1.0 / (1.0 + math.exp(0.5 * LOGSNR_MAX))
    t_max = 1.0 / (1.0 + math.exp(0.5 * LOGSNR_MIN))
    levels = (1.0 - t.clamp(t_min, t_max)).flip(0)
    levels[-1] = 0.0
    return [float(v) for v in levels.to(torch.float32)]
