"""Anima nodes: AnimaLLLiteApply (ComfyUI's node of that name), a ControlNet-LLLite model patch
(ModelPatchLoader) on an Anima model, steered by a control image (and, for the inpainting
patch, a mask). See easel.models.anima_lllite."""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Image, Mask, Model
from easel.nodes.input_checks import mask_batch, require_rgb
from easel.nodes.model_patches import ModelPatch


@node(category="conditioning", outputs={"model": Model})
def AnimaLLLiteApply(
    model: Model,
    model_patch: ModelPatch,
    image: Image,
    strength: float = Input(1.0, ge=-10.0, le=10.0, step=0.01),
    start_percent: float = Input(0.0, ge=0.0, le=1.0, step=0.001),
    end_percent: float = Input(1.0, ge=0.0, le=1.0, step=0.001),
    mask: Mask = None,
) -> Any:
    """Apply an Anima ControlNet-LLLite patch to an Anima model: the control image (an edge,
    depth or other map; for the inpainting patch the image to inpaint, with `mask` 1 where to
    paint) steers the steps between `start_percent` and `end_percent` of the schedule, times
    `strength`."""
    from easel.models.anima_lllite import apply
    from easel.models.errors import ModelError
    from easel.models.model_patches import ANIMA_LLLITE

    if getattr(model_patch, "kind", None) != ANIMA_LLLITE:
        label = getattr(model_patch, "label", type(model_patch).__name__)
        raise NodeError(
            f"{label} is not an Anima ControlNet-LLLite patch (QwenImageDiffsynthControlnet "
            "applies ControlNet patches)",
            "model_patch",
        )
    require_rgb(image)
    if mask is not None:
        mask = mask_batch(mask)
    if start_percent > end_percent:
        raise NodeError(
            f"start_percent {start_percent} is after end_percent {end_percent}", "start_percent"
        )
    try:
        return apply(model, model_patch, image, strength, start_percent, end_percent, mask)
    except ModelError as exc:
        where = "mask" if "mask" in str(exc) else "model_patch"
        raise NodeError(str(exc), where) from exc


NODES = [AnimaLLLiteApply]
