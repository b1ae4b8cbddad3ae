"""unCLIP image conditioning for SDXL ("revision"): CLIP-G image embeddings, noise-augmented,
in place of the pooled text embedding SDXL's added conditioning reads.

What ComfyUI computes (comfy/model_base.py `unclip_adm`, `sdxl_pooled`) and Easel with it:
each image embedding e (CLIPVisionEncode's `image_embeds`) is noised to level
n = round(999 * noise_augmentation) of a 1000-step squaredcos_cap_v2 schedule,
sqrt(abar_n) * e + sqrt(1 - abar_n) * noise, then scaled by its strength; with several
images the weighted sum is noised once more at level 0. SDXL keeps the first 1280 channels:
the embedding itself, not the noise-level embedding appended after it.

diffusers' StableUnCLIPImg2ImgPipeline (SD 2.1 unCLIP) noises the same way
(`noise_image_embeddings`: DDPMScheduler squaredcos_cap_v2 `add_noise`), but it normalises
the embedding with learned CLIP statistics first and feeds the noise-level embedding to the
UNet's class embedding; SDXL revision has neither (ComfyUI's SDXL augmentor has no statistics)
and reads the result through `text_embeds`, where the pooled text embedding was.

The noise: ComfyUI draws it from the sampler's seed minus 10 (and the merge from the global
generator); Easel draws it from its own generator seeded with NOISE_SEED, so a conditioning
gives the same embedding whatever the sampler's seed. At noise_augmentation 0 (the templates'
value) the noise has standard deviation sqrt(1 - abar_0), about 0.0064.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

TIMESTEPS = 1000
NOISE_SEED = 0


@lru_cache(maxsize=1)
def _noising_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=TIMESTEPS, beta_schedule="squaredcos_cap_v2")


def noise_level(noise_augmentation: float) -> int:
    """The schedule step a noise_augmentation in 0..1 means (ComfyUI's rounding)."""
    return round((TIMESTEPS - 1) * float(noise_augmentation))


def augment(embeds: Any, level: int, noise: Any) -> Any:
    """`embeds` noised to schedule step `level` with `noise` (q_sample)."""
    import torch

    steps = torch.full((embeds.shape[0],), level, dtype=torch.long)
    return _noising_scheduler().add_noise(embeds, noise, steps)


def pooled_embedding(entries: list[dict[str, Any]], generator: Any = None) -> Any:
    """SDXL's pooled input [B, width] from unCLIPConditioning entries (each has
    `image_embeds` [B, width], `strength`, `noise_augmentation`), as ComfyUI's sdxl_pooled."""
    import torch

    if generator is None:
        generator = torch.Generator("cpu").manual_seed(NOISE_SEED)
    parts = []
    for entry in entries:
        embeds = entry["image_embeds"].float().cpu()
        for row in embeds.split(1):  # ComfyUI noises each image of a batch on its own
            noise = torch.randn(row.shape, generator=generator)
            level = noise_level(entry["noise_augmentation"])
            parts.append(augment(row, level, noise) * float(entry["strength"]))
    if len(parts) == 1:
        return parts[0]
    merged = torch.stack(parts).sum(0)
    return augment(merged, 0, torch.randn(merged.shape, generator=generator))
