"""Marigold v2 (ComfyUI's MarigoldV2PostProcess): a decoded depth, surface-normal or albedo
prediction turned into the image it shows (easel.models.marigold). The rest of a Marigold v2
workflow is Qwen-Image's: UNETLoader, LoraLoaderModelOnly with the task's LoRA,
ModelSamplingAuraFlow with sampling "img_to_img_velocity", ConditioningLoader with the task's
saved prompt, VAEEncode, SamplerCustomAdvanced, VAEDecode with the task's VAE."""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Image
from easel.models.marigold import PREDICTIONS


@node(category="image/geometry estimation", outputs={"image": Image})
def MarigoldV2PostProcess(
    image: Image, prediction: str = Input("depth", choices=list(PREDICTIONS))
) -> Any:
    """A decoded Marigold v2 prediction as an image: `depth` normalised per image with the
    nearest point brightest (grey), `normals` as unit surface normals (x, y, z in [0, 1]),
    `albedo` converted from linear RGB to sRGB."""
    from easel.models.marigold import postprocess

    try:
        return {"image": postprocess(image, prediction)}
    except ValueError as exc:
        raise NodeError(str(exc), "image") from exc


NODES = [MarigoldV2PostProcess]
