"""Socket types: the names that say which outputs may feed which inputs."""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any


@dataclass(frozen=True)
class Socket:
    """Marks a parameter annotation as a socket of the named type."""

    name: str


# UPPER_SNAKE_CASE, optionally behind a plugin namespace: "MASK", "ACME.MASK".
_NAME = re.compile(r"^(?:[A-Z][A-Z0-9_]*\.)?[A-Z][A-Z0-9_]*$")


def valid_socket_name(name: object) -> bool:
    """Whether `name` is a socket type name: UPPER_SNAKE_CASE, optionally `NAMESPACE.NAME`."""
    return isinstance(name, str) and bool(_NAME.match(name))


def socket_type(name: str) -> Any:
    """An annotation for node parameters and outputs of socket type `name`.

    >>> Mask = socket_type("ACME.MASK")
    >>> def invert(mask: Mask) -> Mask: ...
    """
    if not valid_socket_name(name):
        raise ValueError(
            f"socket type names are UPPER_SNAKE_CASE (optionally NAMESPACE.NAME), got {name!r}"
        )
    return Annotated[Any, Socket(name)]


ANY = "*"

# Value types: these also have widgets in the editor and can be literals.
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
VALUE_TYPES = frozenset({INT, FLOAT, STRING, BOOLEAN})

# Object types of the diffusion pipeline: only ever passed along links.
Model = socket_type("MODEL")
Clip = socket_type("CLIP")
Vae = socket_type("VAE")
Conditioning = socket_type("CONDITIONING")
Latent = socket_type("LATENT")
Image = socket_type("IMAGE")
ImageEmbeds = socket_type("IMAGE_EMBEDS")
Prior = socket_type("PRIOR")
UpscaleModel = socket_type("UPSCALE_MODEL")
Mask = socket_type("MASK")  # [B, H, W] float in [0, 1], 1 where to paint (ComfyUI's MASK)
ControlNet = socket_type("CONTROL_NET")
# ComfyUI's custom sampling: a sampler choice, noise levels, a noise source, a guider.
Sampler = socket_type("SAMPLER")
Sigmas = socket_type("SIGMAS")
Noise = socket_type("NOISE")
Guider = socket_type("GUIDER")
# Image encoders and what they feed: a CLIP vision model, its output, a style model (Redux).
ClipVision = socket_type("CLIP_VISION")
ClipVisionOutput = socket_type("CLIP_VISION_OUTPUT")
StyleModel = socket_type("STYLE_MODEL")

BUILTIN_SOCKET_TYPES = frozenset(
    {
        INT,
        FLOAT,
        STRING,
        BOOLEAN,
        "MODEL",
        "CLIP",
        "VAE",
        "CONDITIONING",
        "LATENT",
        "IMAGE",
        "IMAGE_EMBEDS",
        "PRIOR",
        "UPSCALE_MODEL",
        "MASK",
        "CONTROL_NET",
        "SAMPLER",
        "SIGMAS",
        "NOISE",
        "GUIDER",
        "CLIP_VISION",
        "CLIP_VISION_OUTPUT",
        "STYLE_MODEL",
    }
)

SocketCheck = Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return type(value) is int or (
        isinstance(value, numbers.Integral) and not isinstance(value, bool)
    )


def _is_float(value: Any) -> bool:
    return type(value) is float or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool


# How a returned value is checked against a value socket type; object types get their
# checks from the plugin that registers them (register_socket_types(..., check=...)).
VALUE_CHECKS: dict[str, SocketCheck] = {
    INT: _is_int,
    FLOAT: _is_float,
    STRING: _is_str,
    BOOLEAN: _is_bool,
}


def compatible(output_type: str, input_type: str) -> bool:
    """Whether an output of `output_type` may feed an input of `input_type`."""
    if ANY in (output_type, input_type):
        return True
    if output_type == input_type:
        return True
    # An integer is a valid float, as in JSON.
    return output_type == INT and input_type == FLOAT
