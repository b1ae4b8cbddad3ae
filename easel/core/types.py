"""Socket types: the names that say which outputs may feed which inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any


@dataclass(frozen=True)
class Socket:
    """Marks a parameter annotation as a socket of the named type."""

    name: str


def socket_type(name: str) -> Any:
    """An annotation for node parameters and outputs of socket type `name`.

    >>> Mask = socket_type("MASK")
    >>> def invert(mask: Mask) -> Mask: ...
    """
    if not name or not name.replace("_", "").isalnum() or name.upper() != name:
        raise ValueError(f"socket type names are UPPER_SNAKE_CASE, got {name!r}")
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
ClipVision = socket_type("CLIP_VISION")
Prior = socket_type("PRIOR")
UpscaleModel = socket_type("UPSCALE_MODEL")

BUILTIN_SOCKET_TYPES = frozenset(
    {INT, FLOAT, STRING, BOOLEAN, "MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE",
     "IMAGE_EMBEDS", "CLIP_VISION", "PRIOR", "UPSCALE_MODEL"}
)


def compatible(output_type: str, input_type: str) -> bool:
    """Whether an output of `output_type` may feed an input of `input_type`."""
    if ANY in (output_type, input_type):
        return True
    if output_type == input_type:
        return True
    # An integer is a valid float, as in JSON.
    return output_type == INT and input_type == FLOAT
