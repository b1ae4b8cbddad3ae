"""HiDream-I1 nodes: TextEncodeHiDream (ComfyUI's CLIPTextEncodeHiDream), one prompt per text
encoder of a HiDream CLIP (QuadrupleTextEncoderLoader type hidream)."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Conditioning
from easel.nodes.conditioning import empty_prompt
from easel.nodes.loaders import require
from easel.nodes.model_access import model_errors


@node(category="conditioning", outputs={"conditioning": Conditioning})
def TextEncodeHiDream(
    ctx: Context,
    clip: Clip,
    clip_l: str = Input("", multiline=True),
    clip_g: str = Input("", multiline=True),
    t5xxl: str = Input("", multiline=True),
    llama: str = Input("", multiline=True),
) -> Any:
    """HiDream prompt (ComfyUI's CLIPTextEncodeHiDream): `clip_l` and `clip_g` go to the two
    CLIP towers (their pooled embeddings), `t5xxl` to T5 and `llama` to Llama 3.1 (the
    embeddings the transformer attends to). TextEncode gives all four the same text."""
    from easel.models.text import encode_prompts

    require(clip, "text encoder (CLIP)", "clip")
    keys = {part.key for part in clip.parts}
    if not {"l", "g", "t5", "llama"} <= keys:
        raise NodeError(
            f"TextEncodeHiDream needs a HiDream CLIP (parts l, g, t5 and llama, from "
            f"QuadrupleTextEncoderLoader type hidream); this CLIP ({clip.name}) has parts "
            f"{sorted(keys)}: use TextEncode",
            "clip",
        )
    with model_errors("llama"):
        encoded = encode_prompts(clip, {"l": clip_l, "g": clip_g, "t5": t5xxl, "llama": llama})
        uncond = empty_prompt(clip)
    for warning in encoded.warnings:
        ctx.warn(warning)
    return {"conditioning": {**encoded.conditioning, "uncond": uncond}}


NODES = [TextEncodeHiDream]
