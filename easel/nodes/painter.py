"""Painter (ComfyUI's node of that name): a drawing made in ComfyUI's frontend canvas, saved as
an RGBA PNG (its widget names the file, e.g. "painter/painter-694-1784648658071.png [temp]"),
painted over an optional image or a plain background. Easel reads the drawing like LoadImage
reads an image: from the upload folder (the server) or as a path (the command line), the
ComfyUI folder annotation (" [temp]", " [input]", " [output]") dropped. Outputs the composited
IMAGE and the drawing's alpha as the MASK (1 where painted)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Image, Mask
from easel.nodes.input_checks import require_rgb

ANNOTATION = re.compile(r"\s*\[(temp|input|output)\]\s*$")


def drawing_name(mask: str) -> str:
    """The drawing's file name without ComfyUI's folder annotation."""
    return ANNOTATION.sub("", mask or "").strip()


def _resolve(ctx: Context, mask: str) -> Any:
    from easel.nodes.image_io import resolve_input_image

    try:
        return resolve_input_image(ctx, drawing_name(mask))
    except NodeError as exc:
        raise NodeError(
            f"the Painter's drawing: {exc.message} (ComfyUI's canvas saves it as a PNG; put "
            "it in the upload folder under that name, or clear `mask` for no drawing)",
            "mask",
        ) from None


def _check(ctx: Context, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    if not drawing_name(str(inputs.get("mask", ""))):
        return []
    try:
        _resolve(ctx, str(inputs["mask"]))
    except NodeError as exc:
        return [(exc.input or "mask", exc.message)]
    return []


def _fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """The drawing's content hash, so that a redrawn file is read again."""
    if not drawing_name(str(inputs.get("mask", ""))):
        return ""
    digest = hashlib.sha256(_resolve(ctx, str(inputs["mask"])).read_bytes())
    return digest.hexdigest()


def hex_colour(text: str) -> tuple[float, float, float]:
    """A "#rrggbb" colour as (r, g, b) in [0, 1]; black for anything else (as ComfyUI)."""
    value = text.strip().lstrip("#")
    if not re.fullmatch(r"[0-9a-fA-F]{6}", value):
        return (0.0, 0.0, 0.0)
    return tuple(int(value[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


@node(
    category="image",
    outputs={"image": Image, "mask": Mask},
    fingerprint=_fingerprint,
    check=_check,
)
def Painter(
    ctx: Context,
    mask: str = Input("", widget="image_upload"),
    width: int = Input(512, ge=64, le=4096, step=64),
    height: int = Input(512, ge=64, le=4096, step=64),
    bg_color: str = Input("#000000"),
    image: Image = None,
) -> Any:
    """A drawing (an RGBA PNG, `mask`) painted over `image` (its first picture) or, without
    one, over a `width` x `height` background of `bg_color`; the drawing is resized to fit.
    Outputs the composite and the drawing's alpha as the MASK (1 where painted; all 0 with no
    drawing)."""
    import numpy as np
    import torch
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if image is not None:
        require_rgb(image)
        base = image[:1, :3].float().cpu()
    else:
        colour = torch.tensor(hex_colour(bg_color), dtype=torch.float32)
        base = colour.view(1, 3, 1, 1).expand(1, 3, height, width).clone()
    h, w = base.shape[-2:]
    if not drawing_name(mask):
        return {"image": base, "mask": torch.zeros(1, h, w)}
    path = _resolve(ctx, mask)
    try:
        with PILImage.open(path) as opened:
            drawing = opened.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise NodeError(f"cannot read the drawing {path.name} as an image: {exc}", "mask") from None
    if drawing.size != (w, h):
        drawing = drawing.resize((w, h), PILImage.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(drawing, dtype=np.float32) / 255.0).permute(2, 0, 1)
    rgb, alpha = pixels[None, :3], pixels[None, 3:]
    return {"image": rgb * alpha + base * (1.0 - alpha), "mask": alpha[:, 0]}


NODES = [Painter]
