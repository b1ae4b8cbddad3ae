"""What the edit-prompt nodes (TextEncodeMageFlowEdit, TextEncodeFibo2, TextEncodeBooguEdit,
TextEncodeQwenImage21, TextEncodeJoyImageEdit, Qwen-Image's edit nodes) do alike with their
images: check the text encoder is the family's, take an input's first RGB image, encode an
image into a reference latent (as VAEEncode makes it) and give both conditionings the
references. How each node sizes its images stays in the node: that is where they differ."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import NodeError
from easel.nodes.loaders import require
from easel.nodes.model_access import model_errors


def require_family_clip(clip: Any, family: str, needs: str) -> None:
    """Refuses (naming `clip`) a text encoder that is not family `family`'s; `needs` says
    which one the node takes ("a Mage-Flow text encoder (TextEncoderLoader type mage)")."""
    require(clip, "text encoder (CLIP)", "clip")
    found = getattr(clip, "family", None)
    if getattr(found, "name", None) != family:
        raise NodeError(
            f"needs {needs}; this CLIP ({clip.name}) is "
            f"{getattr(found, 'label', 'another model')}'s",
            "clip",
        )


def rgb(image: Any, input_name: str) -> Any:
    """The image's first three channels; fewer than three is refused, naming the input."""
    if image.shape[1] < 3:
        raise NodeError(f"expects an RGB image, got {image.shape[1]} channels", input_name)
    return image[:, :3]


def first_image(ctx: Context, image: Any, input_name: str) -> Any:
    """The first image of a batch [1, C, H, W], with a warning naming the input when the batch
    holds more."""
    if image.shape[0] > 1:
        ctx.warn(f"{input_name}: a batch of {image.shape[0]} images; the first is used")
    return image[:1]


def latent_of(vae: Any, pixels: Any, input_name: str = "vae") -> Any:
    """The VAE's latent of `pixels` [B, 3, H, W] in [-1, 1] (the posterior's mode, or the
    encoder's latents where it has no posterior), normalised as VAEEncode makes it, on the
    CPU; a model error is named at `input_name`."""
    import torch

    module = vae.manager.place(vae.vae)
    param = next(module.parameters())
    with model_errors(input_name), torch.inference_mode():
        encoded = module.encode(pixels.contiguous().to(param.device, param.dtype))
        dist = getattr(encoded, "latent_dist", None)
        latents = dist.mode() if dist is not None else encoded.latents
    return ((latents.float() - vae.shift_factor) * vae.scaling_factor).cpu()


def reference_latent(vae: Any, image: Any, input_name: str = "vae") -> Any:
    """`latent_of` an image [B, 3, H, W] in [0, 1]."""
    return latent_of(vae, image * 2 - 1, input_name)


def add_references(
    positive: dict[str, Any], negative: dict[str, Any], references: list[Any]
) -> None:
    """Both conditionings get the reference latents (when there are any): the same on both, so
    they cancel under guidance and keep the images' identity."""
    if references:
        positive["reference_latents"] = references
        negative["reference_latents"] = list(references)
