"""The Stable Diffusion families: 1.x, 2.x (eps and v), XL base and refiner, and inpainting.

Each is data: its latent format, text towers, model sampling and added conditioning. How a
single file is told apart is in `recognise.py`; how shapes become configs in `ldm_shapes.py`.
"""

from __future__ import annotations

from dataclasses import replace

from easel.models.families.base import Family, LatentFormat, TextPart

SD_LATENT = LatentFormat(channels=4, scaling_factor=0.18215)
SDXL_LATENT = LatentFormat(channels=4, scaling_factor=0.13025)

CLIP_L = TextPart("", layer=-1, layer_norm=True, hidden_act="quick_gelu")
# OpenCLIP ViT-H: Stable Diffusion 2 uses the penultimate layer, normed.
OPEN_CLIP_H = TextPart("", layer=-2, layer_norm=True, hidden_act="gelu", pad_token="!")
# SDXL: both towers' penultimate layer, not normed; the pooled embedding is bigG's.
SDXL_L = TextPart("l", layer=-2, layer_norm=False, hidden_act="quick_gelu")
SDXL_G = TextPart("g", layer=-2, layer_norm=False, pooled=True, hidden_act="gelu", pad_token="!")

SD1 = Family("sd1", "Stable Diffusion 1.x", SD_LATENT, "epsilon", (CLIP_L,))
SD2 = Family("sd2", "Stable Diffusion 2.x", SD_LATENT, "epsilon", (OPEN_CLIP_H,))
SD2_V = replace(
    SD2, name="sd2-v", label="Stable Diffusion 2.x (v-prediction)", prediction_type="v_prediction"
)
SDXL = Family(
    "sdxl",
    "Stable Diffusion XL",
    SDXL_LATENT,
    "epsilon",
    (SDXL_L, SDXL_G),
    added_cond="sdxl",
    pipeline_class="StableDiffusionXLPipeline",
)
SDXL_REFINER = Family(
    "sdxl-refiner",
    "Stable Diffusion XL refiner",
    SDXL_LATENT,
    "epsilon",
    (replace(SDXL_G, key="g"),),
    added_cond="sdxl_refiner",
    pipeline_class="StableDiffusionXLImg2ImgPipeline",
)
SD1_INPAINT = replace(
    SD1,
    name="sd1-inpaint",
    label="Stable Diffusion 1.x inpainting",
    inpaint=True,
    pipeline_class="StableDiffusionInpaintPipeline",
)
SD2_INPAINT = replace(
    SD2,
    name="sd2-inpaint",
    label="Stable Diffusion 2.x inpainting",
    inpaint=True,
    pipeline_class="StableDiffusionInpaintPipeline",
)
SDXL_INPAINT = replace(
    SDXL,
    name="sdxl-inpaint",
    label="Stable Diffusion XL inpainting",
    inpaint=True,
    pipeline_class="StableDiffusionXLInpaintPipeline",
)

FAMILIES = (SD1, SD2, SD2_V, SDXL, SDXL_REFINER, SD1_INPAINT, SD2_INPAINT, SDXL_INPAINT)
