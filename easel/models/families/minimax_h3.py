"""The MiniMax H3 family: an audio + video flow-matching DiT (one packed sequence of Qwen3-VL
text rows, stereo audio rows and 2x2-patched video rows, full self-attention, AdaLN per
(timestep, modality)) on its own video VAE's latents (24 channels at 1/16, normalised per
channel), conditioned on Qwen3-VL-32B's hidden state after decoder layer 50. Easel makes
images with it: one latent frame (diffusers' MiniMaxH3ModularPipeline and ComfyUI's code).

As data: the latent format (24 channels, factor 16; the VAE wrapper normalises, so scaling 1),
model sampling ("flow", the video schedule's shift 12; the audio stream runs on shift 3,
mapped from the video's noise level: easel.models.minimax_denoiser), the text part, and how a
diffusion-model file in ComfyUI's layout (`blocks.N.attn.qkv_proj`, `token_refiner.blocks`,
`video_patch_proj`, `final_layer`) is recognised and sized. ComfyUI's "pruned" files replace
the timestep MLP by `adaln_t_table` (the time-embedding curve sampled on a grid, which the
AdaLN projections read without SiLU): easel.models.minimax_loading builds both forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import LatentFormat, TextPart
from easel.models.families.flux import FlowFamily

MINIMAX_LATENT = LatentFormat(channels=24, scaling_factor=1.0, shift_factor=0.0, factor=16)
QWEN3VL_32B = TextPart(
    "qwen3vl", layer=-1, layer_norm=False, pad_token="<|endoftext|>", hidden_act="silu"
)
TEXT_LAYER = 50  # the hidden state after this many decoder layers conditions the DiT
VIDEO_SHIFT = 12.0  # the released scheduler configs: video 12, audio 3
AUDIO_SHIFT = 3.0
AUDIO_CHANNELS = 2  # stereo, packed channel-major
AUDIO_LATENTS_PER_SECOND = 40
FPS = 24
PATCH = 2

SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": VIDEO_SHIFT,
    "use_dynamic_shifting": False,
}


@dataclass(frozen=True)
class MiniMaxH3Family(FlowFamily):
    """MiniMax H3: prompts are encoded by `text_encoding` (easel.models.minimax_text)."""

    text_encoding: str = "easel.models.minimax_text"


MINIMAX_H3 = MiniMaxH3Family(
    "minimax-h3",
    "MiniMax H3",
    MINIMAX_LATENT,
    "flow",
    (QWEN3VL_32B,),
    pipeline_class="MiniMaxH3ModularPipeline",
    scheduler_config=SCHEDULER,
    network="minimax-h3",
    patch=PATCH,
)

FAMILIES = (MINIMAX_H3,)

PREFIXES = ("model.diffusion_model.", "")
SIGNATURE = (
    "video_patch_proj.weight",
    "audio_patch_proj.weight",
    "condition_proj.weight",
    "token_refiner.blocks.0.attn.qkv_proj.weight",
    "blocks.0.adaln_proj.linear.weight",
    "final_layer.video_out.weight",
)
PRUNED_TABLE = "adaln_t_table"


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a MiniMax H3 DiT's keys start in `state`, or None."""
    for prefix in PREFIXES:
        if all(prefix + key in state for key in SIGNATURE):
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> tuple[MiniMaxH3Family, tuple[str, ...]] | None:
    """(family, evidence) of a MiniMax H3 DiT in ComfyUI's layout."""
    prefix = prefix_of(state)
    if prefix is None:
        return None
    form = "pruned: adaln_t_table" if prefix + PRUNED_TABLE in state else "time_embedder"
    return MINIMAX_H3, (f"video_patch_proj / audio_patch_proj / blocks.N ({form}): MiniMax H3",)


def is_pruned(state: Mapping[str, Any]) -> bool:
    """Whether a DiT (keys without prefix) is ComfyUI's pruned form (`adaln_t_table`)."""
    return PRUNED_TABLE in state


def count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in state[key].shape)


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """MiniMaxH3Transformer3DModel's config read off a ComfyUI-layout state dict's shapes
    (keys without prefix). In the pruned form the AdaLN projections read the table's width
    (`time_embed_dim`) and the timestep MLP is absent (its sizes stay diffusers' defaults, as
    nothing uses them)."""
    hidden, video_patch = _shape(state, "video_patch_proj.weight")
    head_dim = _shape(state, "blocks.0.attn.q_norm.weight")[0]
    if hidden % head_dim or video_patch % (PATCH * PATCH):
        raise ValueError(f"width {hidden} is not heads of {head_dim}, or {video_patch} not 2x2")
    rope = _shape(state, "rope.inv_freq")[0] if "rope.inv_freq" in state else 16
    if is_pruned(state):
        time_embed_dim = _shape(state, PRUNED_TABLE)[1]
        freq_dim, time_hidden = 256, hidden
    else:
        time_hidden, freq_dim = _shape(state, "time_embedder.proj_in.weight")
        time_embed_dim = _shape(state, "time_embedder.proj_out.weight")[0]
    return {
        "num_attention_heads": hidden // head_dim,
        "attention_head_dim": head_dim,
        "hidden_size": hidden,
        "num_layers": count(state, "blocks."),
        "num_refiner_layers": count(state, "token_refiner.blocks."),
        "ffn_dim": _shape(state, "blocks.0.mlp.fc2.weight")[1],
        "in_channels": video_patch // (PATCH * PATCH),
        "audio_in_channels": _shape(state, "audio_patch_proj.weight")[1],
        "patch_size": (1, PATCH, PATCH),
        "text_dim": _shape(state, "condition_proj.weight")[1],
        "freq_dim": freq_dim,
        "time_embed_hidden_dim": time_hidden,
        "time_embed_dim": time_embed_dim,
        "rope_freq_dim": rope,
    }


def time_shift_sigma(sigma: float, from_shift: float, to_shift: float) -> float:
    """A noise level of a schedule shifted by `from_shift` as the same base point on one
    shifted by `to_shift` (sigma = s b / (1 + (s - 1) b)): the audio's level for a video level,
    as the pipeline's two schedulers (shift 12 and 3 over one base grid) pair them."""
    base = sigma / (from_shift + sigma * (1.0 - from_shift))
    return to_shift * base / (1.0 + (to_shift - 1.0) * base)


def audio_latents_for(frames: int) -> int:
    """Audio latents (per stereo channel) covering `frames` video frames at 24 fps, as the
    pipeline counts them (`audio_latent_num_frames`): 2 for one image."""
    return round(frames / FPS * AUDIO_LATENTS_PER_SECOND)
