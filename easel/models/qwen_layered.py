"""The Qwen-Image-Layered family: Qwen-Image's transformer (same blocks, same Qwen2.5-VL text
encoder, same 16-channel latents) trained to split an image into RGBA layers. What sets it
apart, as data:

- its weights carry one more embedding, `time_text_embed.addition_t_embedding` (a flag added
  to the timestep embedding; the pipeline always passes 0), which is how ComfyUI tells the
  model (and how it is recognised here);
- it samples a layered latent [B, 16, layers + 1, h, w] (ComfyUI's
  EmptyQwenImageLayeredLatentImage; frame 0 is the composite image, the others the layers),
  all frames packed into one token sequence, with the layer index as the rope's frame axis
  (diffusers' `use_layer3d_rope`, which no weight shows) and the reference image (the input,
  VAEEncode -> ReferenceLatent) at frame index -1;
- its VAE is the Qwen-Image VAE with RGBA images in and out (easel.models.qwen_vae).

Model sampling: a fixed flow shift of 1 (what ComfyUI's Layered templates set with
ModelSamplingAuraFlow), not Qwen-Image's resolution-dependent one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.families import qwen_image

ADDITION_KEY = "time_text_embed.addition_t_embedding.weight"

SCHEDULER: Mapping[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
    "invert_sigmas": False,
    "stochastic_sampling": False,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
}

QWEN_IMAGE_LAYERED = qwen_image.QwenImageFamily(
    "qwen-image-layered",
    "Qwen-Image-Layered",
    qwen_image.QWEN_LATENT,
    "flow",
    (qwen_image.QWEN_TEXT,),
    pipeline_class="QwenImageLayeredPipeline",
    scheduler_config=SCHEDULER,
    network="qwen_image_layered",
)

FAMILIES = (QWEN_IMAGE_LAYERED,)


def recognise(state: Mapping[str, Any]) -> tuple[Any, tuple[str, ...]] | None:
    """(family, evidence) of a Qwen-Image-Layered transformer, or None."""
    prefix = qwen_image.prefix_of(state)
    if prefix is None or prefix + ADDITION_KEY not in state:
        return None
    return QWEN_IMAGE_LAYERED, (
        "txt_norm / transformer_blocks.*.img_mod with time_text_embed.addition_t_embedding "
        "(Qwen-Image-Layered transformer)",
    )


def transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Qwen-Image's config read off the shapes, with the layered rope (no weight shows it)."""
    return {**qwen_image.transformer_config(state), "use_layer3d_rope": True}
