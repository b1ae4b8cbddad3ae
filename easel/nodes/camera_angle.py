"""CameraAngle (ComfyUI's comfy_extras/nodes_camera_angle.py, "Compose Camera Angle Prompt"):
a camera position around a subject as a shot description for a prompt ("front-left quarter
view elevated shot medium shot", what multi-angle LoRAs such as Qwen-Image-Edit-2511's are
prompted with) and as camera_info for 3-D nodes. The buckets and the camera geometry are
ComfyUI's (its frontend preview shares them); the preview widget ("view") is UI only."""

from __future__ import annotations

import math
from typing import Annotated, Any

from easel.core.node import Input, node
from easel.core.types import ANY, Image, Socket

AnyValue = Annotated[Any, Socket(ANY)]

CAMERA_FOV = 35.0
SUBJECT_DISTANCE = 6.0
MIN_ZOOM_FACTOR, MAX_ZOOM_FACTOR = 1.0, 1.875
ZOOM_MAX = 10.0
HORIZONTAL_TERMS = (
    "front view",
    "front-right quarter view",
    "right side view",
    "back-right quarter view",
    "back view",
    "back-left quarter view",
    "left side view",
    "front-left quarter view",
)
# (upper bound, term): the first bound the value is under; None: everything above
VERTICAL_TERMS = ((-15, "low-angle shot"), (15, "eye-level shot"), (45, "elevated shot"),
                  (None, "high-angle shot"))  # fmt: skip
DISTANCE_TERMS = ((2, "wide shot"), (6, "medium shot"), (None, "close-up"))


def _bucket(value: float, terms: tuple[tuple[float | None, str], ...]) -> str:
    for upper, term in terms:
        if upper is None or value < upper:
            return term
    return terms[-1][1]


def describe(horizontal: float, vertical: float, zoom: float) -> str:
    """The shot description: the 45-degree sector of the azimuth, the elevation bucket and
    the distance bucket."""
    sector = int(((horizontal % 360) + 22.5) // 45) % len(HORIZONTAL_TERMS)
    return (
        f"{HORIZONTAL_TERMS[sector]} {_bucket(vertical, VERTICAL_TERMS)} "
        f"{_bucket(zoom, DISTANCE_TERMS)}"
    )


def camera_info(horizontal: float, vertical: float, zoom: float) -> dict[str, Any]:
    """A perspective camera on a sphere around the origin, looking at it (ComfyUI's
    Load3DCamera dict)."""
    yaw, pitch = math.radians(horizontal), math.radians(vertical)
    return {
        "position": {
            "x": SUBJECT_DISTANCE * math.cos(pitch) * math.sin(yaw),
            "y": SUBJECT_DISTANCE * math.sin(pitch),
            "z": SUBJECT_DISTANCE * math.cos(pitch) * math.cos(yaw),
        },
        "target": {"x": 0.0, "y": 0.0, "z": 0.0},
        "zoom": MIN_ZOOM_FACTOR + (MAX_ZOOM_FACTOR - MIN_ZOOM_FACTOR) * (zoom / ZOOM_MAX),
        "cameraType": "perspective",
        "fov": CAMERA_FOV,
    }


@node(category="text", outputs={"camera_info": AnyValue, "prompt": str})
def CameraAngle(
    horizontal_angle: int = Input(0, ge=0, le=360),
    vertical_angle: int = Input(0, ge=-30, le=60),
    zoom: float = Input(5.0, ge=0.0, le=ZOOM_MAX, step=0.1),
    image: Image | None = None,
) -> Any:
    """A camera angle around the subject: `horizontal_angle` the azimuth in degrees (0 the
    front, 90 the right side, 180 the back), `vertical_angle` the elevation (negative looks
    up from below), `zoom` 0 (wide shot) to 10 (close-up). Outputs the plain-English shot
    description for a prompt and the camera as a dict for 3-D nodes. `image` is only shown
    in ComfyUI's 3-D preview."""
    return {
        "camera_info": camera_info(horizontal_angle, vertical_angle, zoom),
        "prompt": describe(horizontal_angle, vertical_angle, zoom),
    }


NODES = [CameraAngle]
