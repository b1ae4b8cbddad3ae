"""The HiDream-I1 families (Full, Dev, Fast): a sparse (mixture-of-experts) flow-matching
transformer on the Flux VAE's 16-channel latents, conditioned on T5-XXL embeddings, the hidden
states of every Llama 3.1 layer, and CLIP-L's and CLIP-G's pooled embeddings concatenated.

As data: latent format (the Flux VAE's), model sampling ("flow" with each variant's shift:
Full 3.0, Dev 6.0, Fast 3.0, the values of HiDream's own inference script and ComfyUI's
templates), text parts, and how ComfyUI's diffusion-model file (`hidream_i1_*.safetensors`,
diffusers' key layout with or without `model.diffusion_model.`) is recognised and sized.

The three variants share one architecture: a file's keys cannot tell them apart. The variant
is read from the file name (`dev`, `fast`, else Full); ModelSamplingSD3 sets the shift as the
templates do whatever the name says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.families.base import TextPart
from easel.models.families.flux import FLUX_LATENT, FlowFamily

HEAD_DIM = 128  # HiDream-I1: heads of 128 channels, rope axes (64, 32, 32)
ROPE_AXES = (64, 32, 32)
MAX_RESOLUTION = (128, 128)  # latent patches; the transformer pads non-square images to this
ACTIVATED_EXPERTS = 2  # experts each token is routed to (not in the weights)
LLAMA_LAST_LAYER = 31  # blocks past the 32nd read Llama 3.1 8B's last layer
TOKENS = 128  # HiDreamImagePipeline's max_sequence_length for T5, Llama and CLIP
CLIP_MAX_TOKENS = 218  # its cap on the CLIP prompts (Long-CLIP towers of 248 positions)

HIDREAM_CLIP_L = TextPart("l", pooled=True, hidden_act="quick_gelu")
HIDREAM_CLIP_G = TextPart("g", pooled=True, pad_token="!", hidden_act="gelu")
HIDREAM_T5 = TextPart("t5", pad_token="<pad>", hidden_act="gelu_new")
HIDREAM_LLAMA = TextPart("llama", pad_token="<|eot_id|>", hidden_act="silu")
TEXT_PARTS = (HIDREAM_CLIP_L, HIDREAM_CLIP_G, HIDREAM_T5, HIDREAM_LLAMA)


def _scheduler(shift: float) -> Mapping[str, Any]:
    return {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "num_train_timesteps": 1000,
        "shift": shift,
        "use_dynamic_shifting": False,
    }


@dataclass(frozen=True)
class HiDreamFamily(FlowFamily):
    """A HiDream variant: its own network adapter and text encoding module."""

    network: str = "hidream"
    text_encoding: str = "easel.models.hidream_text"


def _variant(name: str, label: str, shift: float) -> HiDreamFamily:
    return HiDreamFamily(
        name,
        label,
        FLUX_LATENT,
        "flow",
        TEXT_PARTS,
        pipeline_class="HiDreamImagePipeline",
        scheduler_config=_scheduler(shift),
    )


HIDREAM_FULL = _variant("hidream-full", "HiDream-I1 Full", 3.0)
HIDREAM_DEV = _variant("hidream-dev", "HiDream-I1 Dev", 6.0)
HIDREAM_FAST = _variant("hidream-fast", "HiDream-I1 Fast", 3.0)
FAMILIES = (HIDREAM_FULL, HIDREAM_DEV, HIDREAM_FAST)

PREFIXES = ("model.diffusion_model.", "")
MARKER = "caption_projection.0.linear.weight"  # what ComfyUI's model detection looks for


def prefix_of(state: Mapping[str, Any]) -> str | None:
    """Where a HiDream transformer's keys start in `state`, or None when there is none."""
    for prefix in PREFIXES:
        if prefix + MARKER in state and prefix + "double_stream_blocks.0.block.ff_t.w1.weight" in (
            state
        ):
            return prefix
    return None


def variant_for(file_name: str) -> HiDreamFamily:
    """The variant a file's name says (hidream_i1_dev_*, hidream_i1_fast_*), else Full."""
    lowered = file_name.lower()
    if "fast" in lowered:
        return HIDREAM_FAST
    if "dev" in lowered:
        return HIDREAM_DEV
    return HIDREAM_FULL


def recognise(
    state: Mapping[str, Any], file_name: str = ""
) -> tuple[HiDreamFamily, tuple[str, ...]] | None:
    """(family, evidence) of a HiDream transformer, or None."""
    if prefix_of(state) is None:
        return None
    family = variant_for(file_name)
    return family, (
        "double_stream_blocks / caption_projection (HiDream-I1 transformer)",
        f"{family.label} by the file name (the variants share one architecture)",
    )


def _count(state: Mapping[str, Any], head: str) -> int:
    found = {int(k[len(head) :].split(".", 1)[0]) for k in state if k.startswith(head)}
    return max(found) + 1 if found else 0


def llama_layers(blocks: int) -> list[int]:
    """Which Llama layer's hidden states each block reads: block i reads layer i, up to the
    last of Llama 3.1 8B's 32 (HiDream-I1's config and ComfyUI's)."""
    return [min(i, LLAMA_LAST_LAYER) for i in range(blocks)]


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """HiDreamImageTransformer2DModel's config read off the shapes: width from the patch
    embedding, patch size from its input (16 latent channels), depths from the block indices,
    experts from the first double block, caption widths from the projections."""
    prefix = prefix_of(state)
    if prefix is None:
        raise ValueError("no HiDream transformer (caption_projection) in the file")
    proj = tuple(state[prefix + "x_embedder.proj.weight"].shape)
    hidden, patch_inputs = int(proj[0]), int(proj[1])
    if hidden % HEAD_DIM:
        raise ValueError(f"width {hidden} is not a multiple of HiDream's heads of {HEAD_DIM}")
    channels = FLUX_LATENT.channels
    patch = round((patch_inputs / channels) ** 0.5)
    if patch * patch * channels != patch_inputs:
        raise ValueError(f"a patch embedding of {patch_inputs} inputs is not 16-channel patches")
    layers = _count(state, prefix + "double_stream_blocks.")
    single = _count(state, prefix + "single_stream_blocks.")
    captions = _count(state, prefix + "caption_projection.")
    if captions != layers + single + 1:
        raise ValueError(
            f"{captions} caption projections for {layers + single} blocks (expected one per "
            "block and one for T5)"
        )
    experts = _count(state, prefix + "double_stream_blocks.0.block.ff_i.experts.")
    out = int(state[prefix + "final_layer.linear.weight"].shape[0]) // (patch * patch)
    return {
        "patch_size": patch,
        "in_channels": channels,
        "out_channels": out,
        "num_layers": layers,
        "num_single_layers": single,
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "caption_channels": [
            int(state[f"{prefix}caption_projection.{captions - 1}.linear.weight"].shape[1]),
            int(state[prefix + MARKER].shape[1]),
        ],
        "text_emb_dim": int(state[prefix + "p_embedder.pooled_embedder.linear_1.weight"].shape[1]),
        "num_routed_experts": experts,  # 0: plain feed-forward blocks
        "num_activated_experts": ACTIVATED_EXPERTS,
        "axes_dims_rope": list(ROPE_AXES),
        "max_resolution": list(MAX_RESOLUTION),
        "llama_layers": llama_layers(layers + single),
    }
