"""The Flux.2 families (dev and Klein): a flow-matching transformer on the Flux.2 VAE's
32-channel latents patchified 2x2 into 128 channels at 1/16 of the image size, conditioned on
a language model's hidden states (dev: Mistral-Small-3.x, layers 10, 20, 30 stacked; Klein:
Qwen3, layers 9, 18, 27), with position ids of 4 axes (t, h, w, l).

As data: the latent format (Easel's Flux.2 latents are what ComfyUI's EmptyFlux2LatentImage
makes: [B, 128, H/16, W/16], normalised by the VAE's batch-norm statistics, as Flux2Pipeline
keeps them; the VAE handle patchifies and normalises), model sampling ("flow", ComfyUI's fixed
shift mu = 2.02 for KSampler; Flux2Scheduler computes Flux2Pipeline's empirical mu from the
steps and size), the text encoders, and how a file in Black Forest Labs' key layout
(`double_blocks` / `single_blocks` with shared `double_stream_modulation_img`) is recognised
and sized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from easel.models.families.base import LatentFormat, TextPart
from easel.models.families.flux import FlowFamily

# The VAE's 32 latent channels, patchified 2x2: 128 channels at 1/16 (ComfyUI's Flux2 format).
# Latents are kept normalised (batch-norm statistics), so no further scaling or shift.
VAE_LATENT_CHANNELS = 32
PATCH = 2
FLUX2_LATENT = LatentFormat(
    channels=VAE_LATENT_CHANNELS * PATCH * PATCH, scaling_factor=1.0, shift_factor=0.0, factor=16
)
# The text encoders' hidden layers Flux2Pipeline / Flux2KleinPipeline stack (and ComfyUI).
MISTRAL_LAYERS = (10, 20, 30)
QWEN3_LAYERS = (9, 18, 27)
MAX_TEXT_TOKENS = 512  # both pipelines pad the prompt to 512 tokens (max_sequence_length)
ROPE_AXES = 4  # t, h, w, l: every head's channels split in four equal rope axes
ROPE_THETA = 2000
REFERENCE_TIME_SCALE = 10  # reference image i gets t = 10 + 10 * i (Flux2Pipeline, ComfyUI)
DEFAULT_GUIDANCE = 4.0  # Flux2Pipeline's guidance_scale (dev's embedded guidance)
COMFY_SHIFT_MU = 2.02  # ComfyUI's Flux2 sampling_settings: KSampler's exponential shift

# FLUX.2-dev's diffusers scheduler config, with the exponent ComfyUI's KSampler uses. The
# pipelines (and Flux2Scheduler) compute mu from the image size and step count instead.
SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "time_shift_type": "exponential",
    "mu": COMFY_SHIFT_MU,
}

MISTRAL_TEXT = TextPart("mistral", layer=-1, layer_norm=False, pad_token="<pad>", hidden_act="silu")
QWEN3_TEXT = TextPart("qwen3", layer=-1, layer_norm=False, pad_token="<|endoftext|>")


@dataclass(frozen=True)
class Flux2Family(FlowFamily):
    """A Flux.2 model: `text_layers` are the hidden states of its text encoder it reads,
    `text_encoder` names that encoder ("mistral" or "qwen3"); with `kv_cache` (FluxKVCache)
    reference images are run once, at timestep 0, and their keys and values reused."""

    text_layers: tuple[int, ...] = MISTRAL_LAYERS
    text_encoder: str = "mistral"
    text_encoding: str = "easel.models.flux2_text"
    kv_cache: bool = False


FLUX2_DEV = Flux2Family(
    "flux2-dev",
    "Flux.2 dev",
    FLUX2_LATENT,
    "flow",
    (MISTRAL_TEXT,),
    pipeline_class="Flux2Pipeline",
    scheduler_config=SCHEDULER,
    network="flux2",
    patch=1,
    guidance_embeds=True,
)
FLUX2_KLEIN = Flux2Family(
    "flux2-klein",
    "Flux.2 Klein",
    FLUX2_LATENT,
    "flow",
    (QWEN3_TEXT,),
    pipeline_class="Flux2KleinPipeline",
    scheduler_config=SCHEDULER,
    network="flux2",
    patch=1,
    guidance_embeds=False,
    text_layers=QWEN3_LAYERS,
    text_encoder="qwen3",
)

FAMILIES = (FLUX2_DEV, FLUX2_KLEIN)

PREFIXES = ("model.diffusion_model.", "")
MARKER = "double_stream_modulation_img.lin.weight"  # Flux.2's shared modulation (not Flux.1)


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a Flux.2 transformer's keys start in `state`, or None when there is none."""
    for prefix in PREFIXES:
        if prefix + MARKER in state and prefix + "img_in.weight" in state:
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[Flux2Family, tuple[str, ...]] | None:
    """(family, evidence) of a Flux.2 transformer in the original key layout, or None. dev
    embeds a guidance scale (`guidance_in`); Klein does not."""
    prefix = prefix_of(state)
    if prefix is None:
        return None
    evidence = ["double_blocks / single_blocks with shared modulation (Flux.2 transformer)"]
    if prefix + "guidance_in.in_layer.weight" in state:
        return FLUX2_DEV, (*evidence, "a guidance embedding (guidance_in): dev")
    return FLUX2_KLEIN, (*evidence, "no guidance embedding: Klein")


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Flux2Transformer2DModel's config read off the shapes (as ComfyUI's model detection):
    width from img_in, head width from the query norm, depths from the block indices, MLP
    ratio from the first MLP, rope axes a quarter of a head each."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no Flux.2 transformer (double_stream_modulation_img) in the file")

    def shape(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in state[prefix + key].shape)

    hidden, in_channels = shape("img_in.weight")
    head_key = "double_blocks.0.img_attn.norm.query_norm.scale"
    if prefix + head_key not in state:
        head_key = "double_blocks.0.img_attn.norm.query_norm.weight"
    head = shape(head_key)[0]
    if hidden % head or head % ROPE_AXES:
        raise ValueError(f"width {hidden} does not split into heads of {head}")
    mlp = shape("double_blocks.0.img_mlp.0.weight")[0] // 2  # SwiGLU: gate and value fused
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": shape("final_layer.linear.weight")[0],
        "num_layers": _count(state, prefix + "double_blocks."),
        "num_single_layers": _count(state, prefix + "single_blocks."),
        "attention_head_dim": head,
        "num_attention_heads": hidden // head,
        "joint_attention_dim": shape("txt_in.weight")[1],
        "timestep_guidance_channels": shape("time_in.in_layer.weight")[1],
        "mlp_ratio": mlp / hidden,
        "axes_dims_rope": [head // ROPE_AXES] * ROPE_AXES,
        "rope_theta": ROPE_THETA,
        "guidance_embeds": prefix + "guidance_in.in_layer.weight" in state,
    }


def family_of(config: Any) -> Flux2Family:
    """The family of a Flux2Transformer2DModel (its config): dev embeds guidance, Klein does
    not; a model on other than 128 latent channels (a pruned or test model) keeps its own."""

    def get(key: str) -> Any:
        return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)

    family = FLUX2_DEV if get("guidance_embeds") else FLUX2_KLEIN
    channels = int(get("in_channels") or FLUX2_LATENT.channels)
    if channels != family.latent.channels:
        family = replace(family, latent=replace(family.latent, channels=channels))
    return family


def compute_empirical_mu(image_seq_len: int, num_steps: int) -> float:
    """Flux.2's resolution- and step-dependent shift exponent (Black Forest Labs' flux2
    sampling.py, as Flux2Pipeline and ComfyUI's Flux2Scheduler compute it): two lines fitted
    at 10 and 200 steps, interpolated in the step count; above 4300 tokens the 200-step line."""
    a1, b1 = 8.73809524e-05, 1.89833333
    a2, b2 = 0.00016927, 0.45666666
    if image_seq_len > 4300:
        return float(a2 * image_seq_len + b2)
    m_200 = a2 * image_seq_len + b2
    m_10 = a1 * image_seq_len + b1
    slope = (m_200 - m_10) / 190.0
    return float(slope * num_steps + m_200 - 200.0 * slope)
