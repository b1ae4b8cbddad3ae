"""How a returned value is checked against each built-in object socket type.

The built-in plugin registers these with `register_socket_types(..., check=...)`, so a node
that returns the wrong kind of value fails itself instead of its consumer. Checks look at
the value's shape only (no torch import), and run once per output: keep them cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _is_tensor(value: Any, dims: tuple[int, ...] = ()) -> bool:
    shape = getattr(value, "shape", None)
    if shape is None or not hasattr(value, "dtype"):
        return False
    return not dims or len(shape) in dims


def image(value: Any) -> bool:
    """IMAGE: a tensor [B, C, H, W] (or [C, H, W]), or an array/PIL image some nodes pass."""
    return _is_tensor(value) or hasattr(value, "getbands")


def latent(value: Any) -> bool:
    """LATENT: a dict with "samples" (a tensor), as ComfyUI's."""
    return isinstance(value, Mapping) and _is_tensor(value.get("samples"))


def conditioning(value: Any) -> bool:
    """CONDITIONING: a dict ("embeds", "pooled", ... or unCLIP's "image_embeds")."""
    return isinstance(value, Mapping)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _not_plain(value: Any) -> bool:
    """Model handles: anything but None and plain JSON data (a str is a bug, a name)."""
    return value is not None and not isinstance(value, str | int | float | bool | list | dict)


CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "IMAGE": ("images, a tensor [B, C, H, W] in 0..1", image),
    "LATENT": ("latents: {'samples': tensor [B, C, h, w], ...}", latent),
    "CONDITIONING": ("conditioning: {'embeds', 'pooled', ...}", conditioning),
    "IMAGE_EMBEDS": ("CLIP image embeddings, a tensor [B, D]", _is_tensor),
    "MASK": ("a mask, a tensor [B, H, W] in 0..1", _is_tensor),
    "MODEL": ("a denoising model handle", _not_plain),
    "CLIP": ("a text encoder handle", _not_plain),
    "VAE": ("a VAE handle", _not_plain),
    "PRIOR": ("an unCLIP prior handle", _not_plain),
    "UPSCALE_MODEL": ("an upscale model handle", _not_plain),
    "CONTROL_NET": ("a ControlNet handle", _not_plain),
    "SAMPLER": ("a sampler choice (KSamplerSelect)", _not_plain),
    "SIGMAS": ("noise levels, a tensor [steps + 1]", lambda value: _is_tensor(value, (1,))),
    "NOISE": ("a noise source (RandomNoise, DisableNoise)", _not_plain),
    "GUIDER": ("a guider: model and conditionings (CFGGuider, BasicGuider)", _not_plain),
    "BOUNDING_BOX": ("boxes per frame: [[{x, y, width, height, metadata}, ...]]", _is_list),
    "CLIP_VISION": ("a CLIP vision (image encoder) handle", _not_plain),
    "CLIP_VISION_OUTPUT": ("an image encoder's output (CLIPVisionEncode)", _not_plain),
    "STYLE_MODEL": ("a style model handle (Flux Redux)", _not_plain),
    "MODEL_PATCH": ("a model patch handle (ModelPatchLoader)", _not_plain),
}
