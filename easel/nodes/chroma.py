"""Chroma nodes: T5TokenizerOptions (ComfyUI's node of that name), how Chroma's T5 prompts are
padded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from easel.core.node import Input, node
from easel.core.types import Clip
from easel.nodes.loaders import require

MAX_TOKENS = 512


@node(category="conditioning", outputs={"clip": Clip})
def T5TokenizerOptions(
    clip: Clip,
    min_padding: int = Input(0, ge=0, le=MAX_TOKENS),
    min_length: int = Input(0, ge=0, le=MAX_TOKENS),
) -> Any:
    """Pad T5 prompts ComfyUI's way (ComfyUI's T5TokenizerOptions): at least `min_padding`
    padding tokens after the prompt and at least `min_length` tokens in all. Without this node
    a Chroma prompt is padded to 512 tokens, as diffusers' ChromaPipeline pads it; the padding
    changes Chroma's image a little. Other families' T5 prompts keep their own padding."""
    require(clip, "text encoder (CLIP)", "clip")
    options = {"min_padding": min_padding, "min_length": min_length}
    return {"clip": replace(clip, tokenizer_options=options, empty_cache={})}


NODES = [T5TokenizerOptions]
