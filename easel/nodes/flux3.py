"""Flux 3 nodes (ComfyUI's names): ReferenceMultiLatent (reference images for an edit, encoded
and added to both conditionings, and an empty latent of the first one's size) and
Flux3LayoutPrompt (a caption and boxes from CreateBoundingBoxes as Flux 3's layout caption).
The text encoder loads with TextEncoderLoader type flux3; the VAE is Flux.2's.

Flux3LayoutPrompt writes what Flux 3's prompt upsampler writes and the model is trained on
(Black Forest Labs' flux3 bbox.py, as diffusers' Flux 3 prompt_upsampler.py carries it): the
caption, one space, then one JSON array of rows, boxes [y_min, x_min, y_max, x_max] as
integers on a 0-1000 canvas. Text to image rows are {"id", "bbox", "desc"}; edit rows are
{"id", "from", "src_bbox", "tgt_bbox", "desc"}. ComfyUI's own code for this node was not
available to read: an edit here is a caption that cites a reference image (`<ref_image_N>`)
or `mode` "edit", and its boxes are taken as drawn on that reference (the element stays where
it is: source and target box alike), which is what the templates' example ("In
<ref_image_0>, change the dress color <obj_1> to red", the box drawn on the reference) means.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import ANY, Conditioning, Image, Latent, Socket, Vae
from easel.models.families.flux2 import FLUX2_LATENT

AnyValue = Annotated[Any, Socket(ANY)]
CANVAS = 1000  # the layout table's grid (Black Forest Labs' bbox.py)
REFERENCE = re.compile(r"<(ref_image_\d+)>")
LAYOUT_MODES = ("auto", "generate", "edit")
RESIZE_MODES = ("resize", "crop")
MAX_REFERENCES = 10  # the prompt upsampler's (and Flux 3's recipe's) most references


def _grid(box: Any, index: int) -> list[int]:
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise NodeError(f"element {index}'s bbox is not [y_min, x_min, y_max, x_max]", "element")
    try:
        return [round(max(0.0, min(1.0, float(v))) * CANVAS) for v in box]
    except (TypeError, ValueError):
        raise NodeError(f"element {index}'s bbox holds a non-number: {box}", "element") from None


def _description(element: Mapping[str, Any]) -> str:
    """The row's desc: a text element's wording verbatim in double quotes, then its desc."""
    desc = str(element.get("desc") or "").strip()
    text = str(element.get("text") or "").strip()
    if text:
        return f'"{text}"' + (f" {desc}" if desc else "")
    return desc


def layout_rows(caption: str, elements: list[Any], mode: str) -> list[dict[str, Any]]:
    """The layout table's rows for `elements` (CreateBoundingBoxes' elements)."""
    cited = REFERENCE.findall(caption)
    edit = mode == "edit" or (mode == "auto" and bool(cited))
    source = cited[0] if cited else "ref_image_0"
    rows = []
    for index, element in enumerate(elements):
        if not isinstance(element, Mapping):
            raise NodeError(f"element {index} is not a dict (id, bbox, desc)", "element")
        row_id = str(element.get("id") or f"obj_{index + 1}")
        box = _grid(element.get("bbox"), index)
        if edit:
            rows.append(
                {
                    "id": row_id,
                    "from": source,
                    "src_bbox": box,
                    "tgt_bbox": box,
                    "desc": _description(element),
                }
            )
        else:
            rows.append({"id": row_id, "bbox": box, "desc": _description(element)})
    return rows


@node(category="conditioning/flux3", outputs={"prompt": str})
def Flux3LayoutPrompt(
    ctx: Context,
    text: str = Input("", multiline=True),
    element: AnyValue = None,
    mode: str = Input("auto", choices=LAYOUT_MODES),
) -> str:
    """Flux 3's layout caption (ComfyUI's Flux3LayoutPrompt): `text`, the caption citing each
    box by its id in angle brackets (`a red dress <obj_1>`), followed by the table of the boxes
    (CreateBoundingBoxes' elements) as JSON on a 0-1000 grid. `mode` "auto" writes an edit's
    table when the caption cites a reference image (`<ref_image_0>`), else a text-to-image one.
    Without boxes the caption passes as it is."""
    caption = text.strip()
    if element is None:
        return caption
    if not isinstance(element, list):
        raise NodeError(
            "expects CreateBoundingBoxes' elements (a list of {id, bbox, desc})", "element"
        )
    if not element:
        return caption
    if not caption:
        raise NodeError("the layout needs a caption that cites its boxes (<obj_1>, ...)", "text")
    rows = layout_rows(caption, element, mode)
    missing = [row["id"] for row in rows if f"<{row['id']}>" not in caption]
    if missing:
        ctx.warn(
            "the caption does not cite " + ", ".join(f"<{m}>" for m in missing) + ": Flux 3 "
            "reads every box by the id its caption cites"
        )
    return f"{caption} {json.dumps(rows, ensure_ascii=False)}"


def reference_size(width: int, height: int, mode: str, megapixels: float) -> tuple[int, int]:
    """The size a reference is resized to before its 16-pixel grid: "resize" scales it to
    about `megapixels` (up or down); "crop" only scales one above it down (diffusers' Flux 3
    multi-reference preprocessing at 1 megapixel)."""
    target = megapixels * 1024 * 1024
    scale = math.sqrt(target / (width * height))
    if mode == "crop":
        scale = min(1.0, scale)
    if scale == 1.0:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))


def prepare_reference(ctx: Context, image: Any, mode: str, megapixels: float, name: str) -> Any:
    """One reference image [1, 3, H, W], resized as `mode` says, then on the 16-pixel grid:
    "resize" rounds each side to a multiple of 16, "crop" centre-crops to one."""
    from easel.nodes.upscale import resample

    factor = FLUX2_LATENT.factor
    if image.shape[0] != 1:
        ctx.warn(f"{name} is a batch of {image.shape[0]}: its first image is the reference")
    picture = image[:1, :3].float()
    height, width = int(picture.shape[-2]), int(picture.shape[-1])
    new_w, new_h = reference_size(width, height, mode, megapixels)
    if mode == "resize":
        new_w = max(factor, round(new_w / factor) * factor)
        new_h = max(factor, round(new_h / factor) * factor)
    if (new_w, new_h) != (width, height):
        picture = resample(picture, (new_h, new_w), "lanczos").clamp(0, 1)
    crop_w, crop_h = new_w - new_w % factor, new_h - new_h % factor
    if not crop_w or not crop_h:
        raise NodeError(f"the reference is smaller than {factor} pixels", name)
    top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
    return picture[:, :, top : top + crop_h, left : left + crop_w]


@node(
    category="conditioning/flux3",
    outputs={"positive": Conditioning, "negative": Conditioning, "empty_latent": Latent},
)
def ReferenceMultiLatent(
    ctx: Context,
    positive: Conditioning,
    negative: Conditioning,
    vae: Vae,
    image0: Image | None = None,
    image1: Image | None = None,
    image2: Image | None = None,
    image3: Image | None = None,
    image4: Image | None = None,
    image5: Image | None = None,
    image6: Image | None = None,
    image7: Image | None = None,
    image8: Image | None = None,
    image9: Image | None = None,
    resolution: str = Input("resize", choices=RESIZE_MODES),
    megapixels: float = Input(1.0, ge=0.001, le=16.0, step=0.01),
) -> Any:
    """Reference images for an edit (ComfyUI's ReferenceMultiLatent): each linked image, in
    input order, resized (`resolution` "resize": to about `megapixels`, sides multiples of 16;
    "crop": scaled down only when above `megapixels`, centre-cropped to multiples of 16),
    encoded with `vae` and added to both `positive` and `negative` as reference latents (Flux
    3 tells them apart by order: the first is `<ref_image_0>`); `empty_latent` is a blank
    latent of the first reference's size."""
    import torch

    from easel.nodes.vae import VAEEncode

    linked = [
        (f"image{i}", image)
        for i, image in enumerate(
            (image0, image1, image2, image3, image4, image5, image6, image7, image8, image9)
        )
        if image is not None
    ]
    if not linked:
        raise NodeError("link at least one reference image", "image0")
    latents = []
    for name, image in linked:
        picture = prepare_reference(ctx, image, resolution, megapixels, name)
        latents.append(VAEEncode.fn(ctx, vae, picture)["samples"])
    first = latents[0]
    if first.shape[1] != FLUX2_LATENT.channels:
        raise NodeError(
            f"the VAE makes {first.shape[1]}-channel latents; Flux 3 takes the Flux.2 VAE's "
            f"{FLUX2_LATENT.channels}",
            "vae",
        )

    def with_references(conditioning: dict[str, Any]) -> dict[str, Any]:
        return {
            **conditioning,
            "reference_latents": [*conditioning.get("reference_latents", ()), *latents],
        }

    factor = FLUX2_LATENT.factor
    empty = {
        "samples": torch.zeros_like(first[:1]),
        "width": int(first.shape[-1]) * factor,
        "height": int(first.shape[-2]) * factor,
    }
    return {
        "positive": with_references(positive),
        "negative": with_references(negative),
        "empty_latent": empty,
    }


NODES = [Flux3LayoutPrompt, ReferenceMultiLatent]
