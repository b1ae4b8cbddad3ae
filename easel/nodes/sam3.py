"""SAM3Detect: text-prompted detection and segmentation with a SAM 3 / SAM 3.1 checkpoint
(ComfyUI's SAM3_Detect). The checkpoint loads with CheckpointLoader (MODEL and CLIP); the
prompt is TextEncode on its CLIP."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning, Image, Mask, Model
from easel.nodes.bounding_boxes import BoundingBoxes
from easel.nodes.model_access import model_errors


def _box_prompts(bboxes: Any) -> list[list[list[float]]] | None:
    """ComfyUI's BOUNDING_BOX forms (one box, a list for every image, or a list per image)
    -> per-image lists of xyxy pixel boxes."""
    from easel.nodes.bounding_boxes import check_box

    if bboxes is None:
        return None
    if isinstance(bboxes, dict):
        frames: list[Any] = [[bboxes]]
    elif isinstance(bboxes, list) and bboxes and all(isinstance(b, list) for b in bboxes):
        frames = bboxes
    elif isinstance(bboxes, list):
        frames = [bboxes]
    else:
        raise NodeError(f"bboxes is {type(bboxes).__name__}, not BOUNDING_BOX boxes", "bboxes")
    out = []
    for frame in frames:
        boxes = [check_box(box, i, "bboxes") for i, box in enumerate(frame)]
        out.append([[b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"]] for b in boxes])
    return out if any(out) else None


def _points(text: str, label: int, input_name: str) -> list[tuple[float, float, int]]:
    """JSON [{"x": .., "y": ..}, ...] (pixels; KJNodes' PointsEditor format) -> points."""
    import json

    if not text.strip():
        return []
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise NodeError(f"not JSON: {exc}", input_name) from exc
    if isinstance(items, dict):
        items = [items]
    points = []
    for index, item in enumerate(items if isinstance(items, list) else [None]):
        x = item.get("x") if isinstance(item, dict) else None
        y = item.get("y") if isinstance(item, dict) else None
        if isinstance(x, bool) or isinstance(y, bool) or not (
            isinstance(x, int | float) and isinstance(y, int | float)
        ):
            raise NodeError(f"point {index} is not an {{\"x\", \"y\"}} object", input_name)
        points.append((float(x), float(y), label))
    return points


@node(category="detection", outputs={"masks": Mask, "bboxes": BoundingBoxes})
def SAM3Detect(
    ctx: Context,
    model: Model,
    image: Image,
    conditioning: Conditioning | None = None,
    bboxes: BoundingBoxes | None = None,
    positive_coords: str = Input("", multiline=False),
    negative_coords: str = Input("", multiline=False),
    threshold: float = Input(0.5, ge=0.0, le=1.0, step=0.01),
    refine_iterations: int = Input(2, ge=0, le=5),
    individual_masks: bool = Input(False),
) -> dict[str, Any]:
    """Find what the prompt names (TextEncode on the SAM 3 checkpoint's CLIP; commas separate
    prompts, `name:N` lets one prompt find N objects, default 1) and segment it. Objects whose
    score is above `threshold` are kept; each mask is refined `refine_iterations` times by
    SAM's mask decoder on a crop around its box (0: the detector's masks). `bboxes` join the
    text as box prompts, or without text are each segmented by SAM's mask decoder;
    `positive_coords` / `negative_coords` (JSON [{"x", "y"}, ...] in pixels) are one object's
    points for SAM's mask decoder. `masks` is the union per image [B, H, W], or one mask per
    object with `individual_masks`; `bboxes` are the boxes the text found (pixels, with their
    scores) per image."""
    from easel.models import sam3_detect
    from easel.models.sam3 import Sam3Handle

    if not isinstance(model, Sam3Handle):
        raise NodeError(
            "SAM3Detect takes the MODEL of a SAM 3 checkpoint (CheckpointLoader on a "
            f"sam3*.safetensors file), not {type(model).__name__}",
            "model",
        )
    prompts: list[Any] = []
    if conditioning is not None:
        found_prompts = conditioning.get("sam3_prompts") if isinstance(conditioning, dict) else None
        prompts = list(found_prompts or [])
        if not prompts:
            raise NodeError(
                "the conditioning is not a SAM 3 prompt: encode the text with TextEncode on "
                "the CLIP of the same SAM 3 checkpoint",
                "conditioning",
            )
    points = _points(positive_coords, 1, "positive_coords") + _points(
        negative_coords, 0, "negative_coords"
    )
    boxes = _box_prompts(bboxes)

    def on_image(done: int, total: int) -> None:
        ctx.check_cancelled()
        ctx.progress(done, total)

    with model_errors("image"):
        masks, found = sam3_detect.detect(
            model,
            image,
            prompts,
            threshold=threshold,
            refine_iterations=refine_iterations,
            individual=individual_masks,
            box_prompts=boxes,
            point_prompts=points,
            on_image=on_image,
        )
    return {"masks": masks, "bboxes": found}


NODES = [SAM3Detect]
