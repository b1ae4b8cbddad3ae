"""The Ovis-Image network adapter of the sampler loop, calling OvisImageTransformer2DModel as
OvisImagePipeline does: LongCat-Image's adapter (easel.models.longcat_denoiser: packed 2x2
latents, timesteps as sigmas, one call per guidance side, FluxGuidance not read) with Ovis's
position ids, (0, i, i) for the text's tokens and (0, row, column) for the image's."""

from __future__ import annotations

from typing import Any

from easel.models.flux_denoiser import image_ids
from easel.models.longcat_denoiser import LongCatNetwork, text_ids


class OvisNetwork(LongCatNetwork):
    """Calls an OvisImageTransformer2DModel (`call`: the module, or it with LoRA patches)."""

    encoder = "Ovis 2.5 (Qwen3)"
    clip_type = "ovis"
    references = False  # Ovis-Image has no editing model

    def position_ids(
        self, count: int, height: int, width: int, device: Any, dtype: Any
    ) -> tuple[Any, Any]:
        return text_ids(count, device, dtype), image_ids(height, width, device, dtype)
