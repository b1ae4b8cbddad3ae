"""Style model nodes: StyleModelLoader and StyleModelApply (Flux Redux: image tokens appended to
the prompt's), ComfyUI's nodes of those names."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import ClipVisionOutput, Conditioning, StyleModel
from easel.nodes.clip_vision import _fingerprint
from easel.nodes.model_access import discovered, manager, model_errors

STRENGTH_TYPES = ("multiply", "attn_bias")


@node(
    category="loaders",
    outputs={"style_model": StyleModel},
    fingerprint=_fingerprint("style_models"),
)
def StyleModelLoader(ctx: Context, name: str = Input(choices=discovered("style_models"))) -> Any:
    """Load a style model from `style_models/`: Flux Redux (`flux1-redux-dev`), which turns a
    SigLIP image encoding into tokens Flux reads beside the prompt."""
    from easel.models import redux

    with model_errors("name"):
        return {"style_model": redux.load(manager(ctx), name)}


@node(category="conditioning", outputs={"conditioning": Conditioning})
def StyleModelApply(
    conditioning: Conditioning,
    style_model: StyleModel,
    clip_vision_output: ClipVisionOutput,
    strength: float = Input(1.0, ge=0.0, le=10.0, step=0.001),
    strength_type: str = Input("multiply", choices=STRENGTH_TYPES),
) -> Any:
    """Append the style model's tokens for an encoded image to the prompt's (Flux Redux), as
    FluxPriorReduxPipeline does; `multiply` scales the tokens by `strength`. Chain several to
    mix images. `attn_bias` (ComfyUI's attention-bias weighting) is the same at strength 1;
    other strengths need attention masks Easel's Flux does not take, and are refused."""
    from easel.models import redux

    hidden = getattr(clip_vision_output, "last_hidden_state", None)
    if hidden is None:
        raise NodeError("expected a CLIPVisionEncode output", "clip_vision_output")
    if strength_type == "attn_bias" and strength != 1.0:
        raise NodeError(
            "strength_type attn_bias with a strength other than 1 is not supported (Easel's "
            "Flux takes no attention bias): use multiply",
            "strength_type",
        )
    embeds = conditioning.get("embeds")
    if embeds is None:
        raise NodeError(
            "the conditioning has no prompt embeddings to extend: encode a prompt (Flux)",
            "conditioning",
        )
    with model_errors("style_model"):
        tokens = redux.image_tokens(style_model, hidden)
    if tokens.shape[-1] != embeds.shape[-1]:
        raise NodeError(
            f"{style_model.name} makes tokens of width {tokens.shape[-1]} but the prompt's "
            f"are {embeds.shape[-1]} wide: Redux conditions Flux.1 (T5-XXL prompts)",
            "conditioning",
        )
    if strength_type == "multiply":
        tokens = tokens * strength
    import torch

    tokens = tokens.to(dtype=embeds.dtype).expand(embeds.shape[0], -1, -1)
    return {"conditioning": {**conditioning, "embeds": torch.cat([embeds, tokens], dim=1)}}


NODES = [StyleModelLoader, StyleModelApply]
