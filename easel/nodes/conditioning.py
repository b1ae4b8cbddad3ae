"""Text conditioning nodes: TextEncode (any checkpoint), the SDXL size-conditioned encoders, and
CLIPSetLastLayer (CLIP skip)."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Conditioning
from easel.nodes.loaders import require
from easel.nodes.model_access import model_errors

MAX_RESOLUTION = 16384  # ComfyUI's MAX_RESOLUTION, the bound of its SDXL size inputs
TEXT_INPUTS = ("text", "text_g", "text_l")


def empty_prompt(clip: Any) -> dict[str, Any]:
    """The encoding of "" for this CLIP (cached on its handle): the default negative."""
    from easel.models.text import encode_text

    if "" not in clip.empty_cache:
        clip.empty_cache[""] = encode_text(clip, "").conditioning
    return clip.empty_cache[""]


def _embeddings_fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """The embedding files a literal prompt refers to (path, size, time), so adding or
    replacing one re-encodes the prompt."""
    from easel.models.prompt_syntax import embedding_names

    names = [
        name
        for key in TEXT_INPUTS
        if isinstance(inputs.get(key), str)
        for name in embedding_names(inputs[key])
    ]
    if not names:
        return ""
    from easel.models.embeddings import fingerprint

    return fingerprint(ctx.services.get("models"), names)


def _encode(
    ctx: Context, clip: Any, texts: dict[str, str] | None, text: str = "", input_name: str = "text"
) -> dict[str, Any]:
    """Encode (one text for every part, or one per part) with the user's warnings shown."""
    from easel.models.text import encode_prompts, encode_text

    require(clip, "text encoder (CLIP)", "clip")
    with model_errors(input_name):
        encoded = encode_text(clip, text) if texts is None else encode_prompts(clip, texts)
        uncond = empty_prompt(clip)
    for warning in encoded.warnings:
        ctx.warn(warning)
    return {**encoded.conditioning, "uncond": uncond}


@node(
    category="conditioning",
    outputs={"conditioning": Conditioning},
    version=2,
    fingerprint=_embeddings_fingerprint,
)
def TextEncode(ctx: Context, clip: Clip, text: str = Input("", multiline=True)) -> Any:
    """Encode a prompt with ComfyUI's syntax: `(words:1.2)` weights, `(words)` = x1.1,
    `\\(` `\\)` for literal brackets, `embedding:name` (optionally weighted). Long prompts are
    encoded in chunks of 75 tokens. The result also carries the empty prompt's encoding, which
    a sampler uses as the negative when none is linked."""
    return {"conditioning": _encode(ctx, clip, None, text)}


def _parts(clip: Any, wanted: tuple[str, ...], node_name: str) -> None:
    require(clip, "text encoder (CLIP)", "clip")
    keys = [part.key for part in clip.parts]
    if not set(wanted) <= set(keys):
        raise NodeError(
            f"{node_name} needs an SDXL text encoder (parts {', '.join(wanted)}); "
            f"this CLIP ({clip.name}) has parts {keys or 'none'}: use TextEncode",
            "clip",
        )


@node(
    category="conditioning",
    outputs={"conditioning": Conditioning},
    fingerprint=_embeddings_fingerprint,
)
def TextEncodeSDXL(
    ctx: Context,
    clip: Clip,
    width: int = Input(1024, ge=0, le=MAX_RESOLUTION),
    height: int = Input(1024, ge=0, le=MAX_RESOLUTION),
    crop_w: int = Input(0, ge=0, le=MAX_RESOLUTION),
    crop_h: int = Input(0, ge=0, le=MAX_RESOLUTION),
    target_width: int = Input(1024, ge=0, le=MAX_RESOLUTION),
    target_height: int = Input(1024, ge=0, le=MAX_RESOLUTION),
    text_g: str = Input("", multiline=True),
    text_l: str = Input("", multiline=True),
) -> Any:
    """SDXL base prompt with size conditioning (ComfyUI's CLIPTextEncodeSDXL): `text_g` goes to
    the OpenCLIP bigG encoder, `text_l` to CLIP-L; original size (`width`, `height`), crop and
    target size become the UNet's time ids. The default negative gets the same sizes (as
    diffusers does)."""
    _parts(clip, ("l", "g"), "TextEncodeSDXL")
    sizes = {
        "width": width,
        "height": height,
        "crop_w": crop_w,
        "crop_h": crop_h,
        "target_width": target_width,
        "target_height": target_height,
    }
    cond = _encode(ctx, clip, {"l": text_l, "g": text_g}, input_name="text_g")
    cond["sdxl"] = sizes
    cond["uncond"] = {**cond["uncond"], "sdxl": dict(sizes)}
    return {"conditioning": cond}


@node(
    category="conditioning",
    outputs={"conditioning": Conditioning},
    fingerprint=_embeddings_fingerprint,
)
def TextEncodeSDXLRefiner(
    ctx: Context,
    clip: Clip,
    ascore: float = Input(6.0, ge=0.0, le=1000.0, step=0.01),
    width: int = Input(1024, ge=0, le=MAX_RESOLUTION),
    height: int = Input(1024, ge=0, le=MAX_RESOLUTION),
    text: str = Input("", multiline=True),
) -> Any:
    """SDXL refiner prompt with aesthetic-score conditioning (ComfyUI's
    CLIPTextEncodeSDXLRefiner). The default negative gets aesthetic score 2.5 and the same
    size (diffusers' defaults)."""
    _parts(clip, ("g",), "TextEncodeSDXLRefiner")
    cond = _encode(ctx, clip, None, text)
    cond["sdxl"] = {"aesthetic_score": ascore, "width": width, "height": height}
    cond["uncond"] = {
        **cond["uncond"],
        "sdxl": {"aesthetic_score": 2.5, "width": width, "height": height},
    }
    return {"conditioning": cond}


@node(category="conditioning", outputs={"clip": Clip})
def CLIPSetLastLayer(
    ctx: Context, clip: Clip, stop_at_clip_layer: int = Input(-1, ge=-24, le=-1)
) -> Any:
    """CLIP skip, as ComfyUI counts it: -1 uses the last layer, -2 the penultimate (diffusers'
    `clip_skip=1`; A1111's "clip skip 2"). Applies to every text encoder of the checkpoint; a
    layer deeper than the encoder has falls back to the last one."""
    require(clip, "text encoder (CLIP)", "clip")
    return {"clip": clip.with_layer(stop_at_clip_layer)}


NODES = [TextEncode, TextEncodeSDXL, TextEncodeSDXLRefiner, CLIPSetLastLayer]
