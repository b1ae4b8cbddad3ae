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


@node(category="detection", outputs={"masks": Mask, "bboxes": BoundingBoxes})
def SAM3Detect(
    ctx: Context,
    model: Model,
    image: Image,
    conditioning: Conditioning,
    threshold: float = Input(0.5, ge=0.0, le=1.0, step=0.01),
    refine_iterations: int = Input(2, ge=0, le=5),
    individual_masks: bool = Input(False),
) -> dict[str, Any]:
    """Find what the prompt names (TextEncode on the SAM 3 checkpoint's CLIP; commas separate
    prompts, `name:N` lets one prompt find N objects, default 1) and segment it. Objects whose
    score is above `threshold` are kept; each mask is refined `refine_iterations` times by
    SAM's mask decoder on a crop around its box (0: the detector's masks). `masks` is the union
    per image [B, H, W], or one mask per object with `individual_masks`; `bboxes` are the kept
    boxes (pixels, with their scores) per image."""
    from easel.models import sam3_detect
    from easel.models.sam3 import Sam3Handle

    if not isinstance(model, Sam3Handle):
        raise NodeError(
            "SAM3Detect takes the MODEL of a SAM 3 checkpoint (CheckpointLoader on a "
            f"sam3*.safetensors file), not {type(model).__name__}",
            "model",
        )
    prompts = conditioning.get("sam3_prompts") if isinstance(conditioning, dict) else None
    if not prompts:
        raise NodeError(
            "the conditioning is not a SAM 3 prompt: encode the text with TextEncode on the "
            "CLIP of the same SAM 3 checkpoint",
            "conditioning",
        )

    def on_image(done: int, total: int) -> None:
        ctx.check_cancelled()
        ctx.progress(done, total)

    with model_errors("image"):
        masks, boxes = sam3_detect.detect(
            model,
            image,
            prompts,
            threshold=threshold,
            refine_iterations=refine_iterations,
            individual=individual_masks,
            on_image=on_image,
        )
    return {"masks": masks, "bboxes": boxes}


NODES = [SAM3Detect]
