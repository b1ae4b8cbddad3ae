"""Lumina 2 nodes: TextEncodeLumina2 (ComfyUI's CLIPTextEncodeLumina2), a prompt after one of
Lumina 2's two system prompts. Z-Image and Lumina 2 prompts otherwise go through TextEncode
(Z-Image's chat template is applied by its text encoding, easel.models.lumina_text)."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Conditioning
from easel.nodes.conditioning import _encode

# Lumina 2's system prompts, as ComfyUI's CLIPTextEncodeLumina2 names them ("superior" is
# Lumina2Pipeline's default).
SYSTEM_PROMPTS = {
    "superior": (
        "You are an assistant designed to generate superior images with the superior degree "
        "of image-text alignment based on textual prompts or user prompts."
    ),
    "alignment": (
        "You are an assistant designed to generate high-quality images with the highest "
        "degree of image-text alignment based on textual prompts."
    ),
}
SEPARATOR = " <Prompt Start> "


@node(category="conditioning", outputs={"conditioning": Conditioning})
def TextEncodeLumina2(
    ctx: Context,
    clip: Clip,
    system_prompt: str = Input("superior", choices=list(SYSTEM_PROMPTS)),
    user_prompt: str = Input("", multiline=True),
) -> Any:
    """Lumina 2 prompt (ComfyUI's CLIPTextEncodeLumina2): the chosen system prompt, then
    " <Prompt Start> ", then `user_prompt`, encoded by the Gemma 2 text encoder (as
    Lumina2Pipeline builds its prompt)."""
    kinds = [getattr(part, "kind", "clip") for part in getattr(clip, "parts", ())]
    if clip is not None and kinds != ["gemma2"]:
        raise NodeError(
            f"TextEncodeLumina2 needs a Lumina 2 CLIP (a Gemma 2 file from TextEncoderLoader "
            f"type lumina2); this CLIP ({clip.name}) has {', '.join(kinds) or 'no'} text "
            "encoders: use TextEncode",
            "clip",
        )
    text = SYSTEM_PROMPTS[system_prompt] + SEPARATOR + user_prompt
    return {"conditioning": _encode(ctx, clip, None, text, "user_prompt")}


NODES = [TextEncodeLumina2]
