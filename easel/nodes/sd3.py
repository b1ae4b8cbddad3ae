"""SD3 / 3.5 nodes: TextEncodeSD3, a prompt per text encoder (ComfyUI's CLIPTextEncodeSD3). The
loaders are the split-file ones (TripleTextEncoderLoader, DualTextEncoderLoader and
TextEncoderLoader, type sd3), the shift is ModelSamplingSD3 (easel.nodes.flux)."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Conditioning
from easel.nodes.conditioning import empty_prompt
from easel.nodes.loaders import require
from easel.nodes.model_access import model_errors

SD3_TEXT = "easel.models.sd3_text"
EMPTY_PADDING = ["none", "empty_prompt"]


@node(category="conditioning", outputs={"conditioning": Conditioning})
def TextEncodeSD3(
    ctx: Context,
    clip: Clip,
    clip_l: str = Input("", multiline=True),
    clip_g: str = Input("", multiline=True),
    t5xxl: str = Input("", multiline=True),
    empty_padding: str = Input("none", choices=EMPTY_PADDING),
) -> Any:
    """SD3 prompt (ComfyUI's CLIPTextEncodeSD3): `clip_l`, `clip_g` and `t5xxl` go to their
    encoders (StableDiffusion3Pipeline's prompt, prompt_2 and prompt_3). With `empty_padding`
    "none", empty prompts are left out as ComfyUI leaves them: both CLIP prompts empty means no
    CLIP tokens (pooled zeros), an empty T5 prompt is its end token alone; "empty_prompt"
    encodes them as the empty prompt. The default negative is the empty prompt."""
    from easel.models import sd3_text

    require(clip, "text encoder (CLIP)", "clip")
    if getattr(clip.family, "text_encoding", None) != SD3_TEXT:
        label = getattr(clip.family, "label", None) or "no model family"
        raise NodeError(
            f"TextEncodeSD3 needs an SD3 CLIP (TripleTextEncoderLoader type sd3, or an SD3 "
            f"checkpoint's); this CLIP ({clip.name}) is for {label}: use TextEncode",
            "clip",
        )
    texts = {"l": clip_l, "g": clip_g, "t5": t5xxl}
    with model_errors("clip_l"):
        encoded = sd3_text.encode(clip, texts, leave_out_empty=empty_padding == "none")
        uncond = empty_prompt(clip)
    for warning in encoded.warnings:
        ctx.warn(warning)
    return {"conditioning": {**encoded.conditioning, "uncond": uncond}}


NODES = [TextEncodeSD3]
