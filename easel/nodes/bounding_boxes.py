"""Bounding boxes drawn on a canvas (ComfyUI's CreateBoundingBoxes): the boxes the editor's
box widget holds, in pixels of a `width` x `height` canvas (over an optional background image),
as a BOUNDING_BOX value, a preview with the boxes drawn, and the boxes as layout elements that
a layout prompt (Flux3LayoutPrompt) cites by id.

A box is ComfyUI's dict: {"x", "y", "width", "height", "metadata": {"type", "text", "desc",
"palette"}} (pixels, top-left origin). BOUNDING_BOX is ComfyUI's per-frame list: a list with
one list of boxes per image. An element is {"id", "type", "bbox": [y_min, x_min, y_max, x_max]
as fractions of the canvas (0..1), "desc", "text"}; ids are the box's type and its number among
the boxes of that type, from 1 in drawing order (`obj_1`, `obj_2`, `text_1`), which is what the
templates' prompts cite (`<obj_1>`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import ANY, Image, Socket

BoundingBoxes = Annotated[Any, Socket("BOUNDING_BOX")]
AnyValue = Annotated[Any, Socket(ANY)]
MAX_SIDE = 16384
CANVAS_GREY = 0.5  # the preview's canvas without a background
COLOURS = ((1.0, 0.25, 0.25), (0.25, 0.8, 0.3), (0.3, 0.5, 1.0), (1.0, 0.8, 0.2))


def _number(box: Mapping[str, Any], key: str, index: int, input_name: str) -> float:
    value = box.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NodeError(f"box {index} has no number {key!r} (got {value!r})", input_name)
    return float(value)


def check_box(box: Any, index: int, input_name: str) -> dict[str, Any]:
    """A box as ComfyUI's dict, its numbers checked; NodeError naming the input if not."""
    if not isinstance(box, Mapping):
        raise NodeError(
            f"box {index} is {type(box).__name__}, not a {{x, y, width, height}} dict", input_name
        )
    x, y = _number(box, "x", index, input_name), _number(box, "y", index, input_name)
    w, h = _number(box, "width", index, input_name), _number(box, "height", index, input_name)
    if w <= 0 or h <= 0:
        raise NodeError(f"box {index} has an empty size ({w} x {h})", input_name)
    metadata = box.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise NodeError(f"box {index}'s metadata is not a dict", input_name)
    return {"x": x, "y": y, "width": w, "height": h, "metadata": dict(metadata)}


def elements_of(boxes: Sequence[dict[str, Any]], width: int, height: int) -> list[dict[str, Any]]:
    """The boxes as layout elements: ids by type and number, boxes [y_min, x_min, y_max, x_max]
    as fractions of the canvas, clamped to it."""
    counts: dict[str, int] = {}
    elements = []
    for box in boxes:
        metadata = box["metadata"]
        kind = str(metadata.get("type") or "obj").strip() or "obj"
        counts[kind] = counts.get(kind, 0) + 1

        def clamp(value: float, side: int) -> float:
            return min(1.0, max(0.0, value / side))

        elements.append(
            {
                "id": f"{kind}_{counts[kind]}",
                "type": kind,
                "bbox": [
                    clamp(box["y"], height),
                    clamp(box["x"], width),
                    clamp(box["y"] + box["height"], height),
                    clamp(box["x"] + box["width"], width),
                ],
                "desc": str(metadata.get("desc") or ""),
                "text": str(metadata.get("text") or ""),
            }
        )
    return elements


def preview(background: Any, boxes: Sequence[dict[str, Any]], width: int, height: int) -> Any:
    """The canvas (the background, resized to it, or grey) with each box's outline drawn."""
    import torch

    from easel.nodes.upscale import resample

    if background is None:
        canvas = torch.full((1, 3, height, width), CANVAS_GREY)
    else:
        canvas = background[:1, :3].float().cpu()
        if tuple(canvas.shape[-2:]) != (height, width):
            canvas = resample(canvas, (height, width), "bilinear")
        canvas = canvas.clone()
    line = max(1, round(min(width, height) / 256))
    for index, box in enumerate(boxes):
        colour = torch.tensor(COLOURS[index % len(COLOURS)]).view(3, 1, 1)
        left, top = round(box["x"]), round(box["y"])
        right, bottom = round(box["x"] + box["width"]), round(box["y"] + box["height"])
        left, top = max(0, min(width - 1, left)), max(0, min(height - 1, top))
        right, bottom = max(left + 1, min(width, right)), max(top + 1, min(height, bottom))
        for y0, y1, x0, x1 in (
            (top, min(bottom, top + line), left, right),
            (max(top, bottom - line), bottom, left, right),
            (top, bottom, left, min(right, left + line)),
            (top, bottom, max(left, right - line), right),
        ):
            canvas[0, :, y0:y1, x0:x1] = colour
    return canvas


def parse_boxes(text: str) -> list[Any]:
    """The editor's boxes: a JSON list (empty text: none)."""
    import json

    if not text.strip():
        return []
    try:
        boxes = json.loads(text)
    except ValueError as exc:
        raise NodeError(f"is not JSON ({exc})", "boxes") from None
    if not isinstance(boxes, list):
        raise NodeError("expects a JSON list of {x, y, width, height, metadata} boxes", "boxes")
    return boxes


@node(
    category="image",
    outputs={"preview": Image, "bboxes": BoundingBoxes, "elements": AnyValue},
)
def CreateBoundingBoxes(
    ctx: Context,
    width: int = Input(1024, ge=1, le=MAX_SIDE),
    height: int = Input(1024, ge=1, le=MAX_SIDE),
    boxes: str = Input("[]", multiline=True),
    background: Image | None = None,
    bboxes: BoundingBoxes | None = None,
) -> Any:
    """Boxes on a `width` x `height` canvas (ComfyUI's CreateBoundingBoxes): the linked
    `bboxes` (their first frame) and then the `boxes` drawn in the editor, in pixels. Outputs
    the boxes (BOUNDING_BOX, one frame), a preview of them over `background` (or a grey
    canvas), and the layout `elements` (id, type, box as fractions of the canvas, description)
    that Flux3LayoutPrompt turns into Flux 3's layout caption. `boxes` is JSON text: a list
    of {"x", "y", "width", "height", "metadata": {"type", "desc", "text"}}."""
    collected: list[dict[str, Any]] = []
    if bboxes is not None:
        if not isinstance(bboxes, list) or (bboxes and not isinstance(bboxes[0], list)):
            raise NodeError("expects ComfyUI's BOUNDING_BOX: a list of frames of boxes", "bboxes")
        if len(bboxes) > 1:
            ctx.warn(f"bboxes has {len(bboxes)} frames: the boxes of the first one are used")
        first = bboxes[0] if bboxes else []
        collected += [check_box(box, i, "bboxes") for i, box in enumerate(first)]
    collected += [check_box(box, i, "boxes") for i, box in enumerate(parse_boxes(boxes))]
    image = preview(background, collected, width, height)
    return {
        "preview": image,
        "bboxes": [collected],
        "elements": elements_of(collected, width, height),
    }


NODES = [CreateBoundingBoxes]
