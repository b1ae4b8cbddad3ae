"""Qwen-Image-Layered's latent node (ComfyUI's comfy_extras/nodes_qwen.py): the layered latent
the Layered model samples, [B, 16, layers + 1, height / 8, width / 8] (frame 0 the composite
image, then one frame per layer). After sampling, ComfyUI's templates drop frame 0 with
LatentCut (dim "t", index 1) and split the layers into the batch with LatentCutToBatch
(easel/nodes/latent_cut.py) for VAEDecode, which gives one RGBA image per layer."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Latent
from easel.nodes.latent import _latent_budget

FACTOR = 8
CHANNELS = 16


@node(category="latent", outputs={"latent": Latent})
def EmptyQwenImageLayeredLatentImage(
    ctx: Context,
    width: int = Input(640, ge=16, le=8192, step=16),
    height: int = Input(640, ge=16, le=8192, step=16),
    layers: int = Input(3, ge=0, le=64),
    batch_size: int = Input(1, ge=1, le=64),
) -> Any:
    """A blank layered latent for Qwen-Image-Layered: `layers` RGBA layers plus the composite
    image, each `width` x `height` pixels."""
    import torch

    frames = (layers + 1) * batch_size
    for input_name, problem in _latent_budget(
        ctx, {"width": width, "height": height, "batch_size": frames}
    ):
        raise NodeError(problem, input_name if input_name != "batch_size" else "layers")
    for name, value in (("width", width), ("height", height)):
        if value % FACTOR:
            raise NodeError(
                f"{value} is not a multiple of the VAE's downscale factor {FACTOR}; "
                f"try {max(FACTOR, value - value % FACTOR)}",
                name,
            )
    samples = torch.zeros(batch_size, CHANNELS, layers + 1, height // FACTOR, width // FACTOR)
    return {"samples": samples}


NODES = [EmptyQwenImageLayeredLatentImage]
