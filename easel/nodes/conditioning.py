"""TextEncode: a prompt through a CLIP text tower into a CONDITIONING."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, node
from easel.core.types import Clip, Conditioning
from easel.nodes.loaders import require


def empty_prompt(clip: Any) -> dict[str, Any]:
    """The encoding of "" for this CLIP (cached on its handle): the default negative."""
    from easel.models.text import encode_text

    if "" not in clip.empty_cache:
        clip.empty_cache[""] = encode_text(clip, "").conditioning
    return clip.empty_cache[""]


@node(category="conditioning", outputs={"conditioning": Conditioning})
def TextEncode(ctx: Context, clip: Clip, text: str = Input("", multiline=True)) -> Any:
    """Encode a prompt. Prompts longer than the encoder's window are encoded in windows
    (with a warning). The result also carries the empty prompt's encoding, which a sampler
    uses as the negative when none is linked."""
    from easel.models.text import encode_text

    require(clip, "text encoder (CLIP)", "clip")
    clip.manager.place(clip.text_model)
    if clip.text_projection is not None:
        clip.manager.place(clip.text_projection)
    encoded = encode_text(clip, text)
    for warning in encoded.warnings:
        ctx.warn(warning)
    return {**encoded.conditioning, "uncond": empty_prompt(clip)}


NODES = [TextEncode]
