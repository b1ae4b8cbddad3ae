"""Marigold v2's predictions as images (ComfyUI's MarigoldV2PostProcess): the decoded image of
a depth, surface-normal or albedo run turned into what it shows.

Marigold v2 runs on Qwen-Image-Edit-2509 with a task LoRA, a saved task prompt
(ConditioningLoader) and image-to-image velocity sampling (easel.models.marigold_sampling); the
VAE decodes the prediction to an RGB image in [0, 1], which is read here:

- depth: the channels' mean, normalised per image to [0, 1] with the nearest point brightest
  (Marigold v2's depth is affine-invariant, larger is farther), as grey in three channels;
- normals: [0, 1] -> [-1, 1], unit length per pixel, back to [0, 1] (diffusers' Marigold
  normals pipeline normalises so: its `normalize_normals`, used here);
- albedo: the prediction is linear RGB, shown as sRGB (kornia's linear_rgb_to_rgb: the sRGB
  transfer curve, ComfyUI's formula).

Where v1 differs (diffusers' MarigoldImageProcessor, the SD2-based pipelines): v1 depth is
shown with a colour map (Spectral), far bright; v1 intrinsics apply a gamma of 1/2.2 rather
than the sRGB curve. ComfyUI's v2 node, whose output the templates save, is followed here.
"""

from __future__ import annotations

from typing import Any

PREDICTIONS = ("depth", "normals", "albedo")
EPSILON = 1e-6  # the smallest depth range divided by (ComfyUI's)


def depth(image: Any) -> Any:
    """[B, C, H, W] decoded depth -> grey [B, 3, H, W], near 1 and far 0, per image."""
    d = image.mean(dim=1, keepdim=True)
    low = d.amin(dim=(1, 2, 3), keepdim=True)
    high = d.amax(dim=(1, 2, 3), keepdim=True)
    return ((high - d) / (high - low).clamp(min=EPSILON)).repeat(1, 3, 1, 1)


def normals(image: Any) -> Any:
    """[B, 3, H, W] decoded normals -> unit normals mapped to [0, 1]."""
    from diffusers import MarigoldNormalsPipeline

    # normalize_normals divides in place: on a tensor of its own
    unit = MarigoldNormalsPipeline.normalize_normals(image * 2.0 - 1.0)
    return (unit + 1.0) * 0.5


def albedo(image: Any) -> Any:
    """[B, 3, H, W] decoded linear albedo -> sRGB."""
    from kornia.color import linear_rgb_to_rgb

    return linear_rgb_to_rgb(image)


def postprocess(image: Any, prediction: str) -> Any:
    """The image of `prediction` ("depth", "normals" or "albedo") for a decoded IMAGE."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction {prediction!r} is not one of {', '.join(PREDICTIONS)}")
    if image.dim() == 3:  # one image [C, H, W]
        return postprocess(image[None], prediction)[0]
    if prediction != "depth" and image.shape[1] != 3:
        raise ValueError(f"{prediction} needs an RGB image; this one has {image.shape[1]} channels")
    return {"depth": depth, "normals": normals, "albedo": albedo}[prediction](image)
