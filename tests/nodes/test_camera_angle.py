"""CameraAngle: ComfyUI's shot description buckets and camera geometry."""

from __future__ import annotations

import math

import pytest

from easel.nodes.camera_angle import CameraAngle


@pytest.mark.parametrize(
    ("h", "v", "zoom", "prompt"),
    [
        (0, 0, 5.0, "front view eye-level shot medium shot"),
        (333, 17, 5.0, "front-left quarter view elevated shot medium shot"),  # the template's
        (90, -30, 0.0, "right side view low-angle shot wide shot"),
        (180, 60, 10.0, "back view high-angle shot close-up"),
        (338, 45, 6.0, "front view high-angle shot close-up"),  # from 337.5: the front
        (360, -15, 2.0, "front view eye-level shot medium shot"),
    ],
)
def test_prompt_buckets(h: int, v: int, zoom: float, prompt: str) -> None:
    out = call(CameraAngle, horizontal_angle=h, vertical_angle=v, zoom=zoom)
    assert out["prompt"] == prompt


def call(node_type, **inputs):
    return node_type.call(None, {**node_type.value_defaults, **inputs})


def test_camera_info_on_a_sphere_around_the_subject() -> None:
    info = call(CameraAngle, horizontal_angle=90, vertical_angle=30, zoom=10.0)["camera_info"]
    pos = info["position"]
    assert math.isclose(math.hypot(pos["x"], pos["y"], pos["z"]), 6.0)
    assert math.isclose(pos["y"], 3.0) and math.isclose(pos["z"], 0.0, abs_tol=1e-9)
    assert info["zoom"] == pytest.approx(1.875) and info["cameraType"] == "perspective"


def test_multiangle_template_feeds_the_shot_description_to_the_edit_prompt() -> None:
    """ComfyUI's template_qwen_multiangle.app: CameraAngle's prompt output (its 3-D preview
    inputs dropped) is the Qwen-Image-Edit-2511 encoder's prompt, and the node gives the shot
    the template's angles describe."""
    import importlib.util
    import json
    from pathlib import Path

    from easel.comfy.convert import to_easel

    spec = importlib.util.find_spec("comfyui_workflow_templates_json")
    assert spec is not None and spec.origin is not None, "the templates corpus (dev extra)"
    path = Path(spec.origin).parent / "templates" / "template_qwen_multiangle.app.json"
    nodes = to_easel(json.loads(path.read_text(encoding="utf-8")))["nodes"]
    [angle] = [i for i, n in nodes.items() if n["type"] == "CameraAngle"]
    [encoder] = [n for n in nodes.values() if n["inputs"].get("prompt") == [angle, "prompt"]]
    assert encoder["type"] == "TextEncodeQwenImageEditPlus"
    out = call(CameraAngle, **nodes[angle]["inputs"])
    assert out["prompt"] == "front-left quarter view elevated shot medium shot"
