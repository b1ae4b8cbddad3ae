"""Real templates of ComfyUI's corpus that need no model run end to end in Easel: the image
stitch utility (ImageStitch, ResizeImageMaskNode) and the image upscale utility (ImageScaleBy,
ImageCompare)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from easel.comfy.convert import to_easel
from easel.core.executor import Executor
from easel.core.plugins import load_plugins
from easel.workflow_edit import set_input

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def template(name: str) -> dict[str, Any]:
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "templates" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def run(workflow: dict[str, Any], tmp_path: Path) -> Any:
    executor = Executor(
        load_plugins(entry_points=False), services={"input_dir": tmp_path / "input"}
    )
    result = executor.run(workflow, output_dir=tmp_path / "output")
    assert result.ok, result.failures
    return result


def test_the_image_stitch_template_makes_a_two_by_two_sheet(tmp_path) -> None:
    workflow = to_easel(template("utility_image_stitch"))
    (tmp_path / "input").mkdir()
    names = {}
    for node_id, node in workflow["nodes"].items():
        if node["type"] == "LoadImage":
            names[node["inputs"]["image"]] = node_id
    assert sorted(names) == ["angle_1.png", "angle_2.png", "angle_3.png", "angle_4.png"]
    for name, colour in zip(sorted(names), COLOURS, strict=True):
        PILImage.new("RGB", (16, 16), colour).save(tmp_path / "input" / name)
    [resize] = [i for i, n in workflow["nodes"].items() if n["type"] == "ResizeImageMask"]
    set_input(workflow, f"{resize}.width", 64)  # 2048 x 2048 in the template
    set_input(workflow, f"{resize}.height", 64)
    result = run(workflow, tmp_path)
    [saved] = [name for entry in result.ui.values() for name in entry.get("files", [])]
    picture = PILImage.open(tmp_path / "output" / saved).convert("RGB")
    assert picture.size == (64, 64)
    # angle_1 | angle_2 over angle_3 | angle_4, each quadrant its colour.
    corners = [picture.getpixel(xy) for xy in [(16, 16), (48, 16), (16, 48), (48, 48)]]
    assert corners == COLOURS


def test_the_upscale_template_saves_and_compares(tmp_path) -> None:
    workflow = to_easel(template("utility_interpolation_image_upscale"))
    (tmp_path / "input").mkdir()
    [loader] = [n for n in workflow["nodes"].values() if n["type"] == "LoadImage"]
    PILImage.new("RGB", (12, 8), (10, 200, 30)).save(tmp_path / "input" / loader["inputs"]["image"])
    result = run(workflow, tmp_path)
    files = [name for entry in result.ui.values() for name in entry.get("files", [])]
    [compare] = [entry for entry in result.ui.values() if "a_images" in entry]
    assert PILImage.open(tmp_path / "output" / files[0]).size == (24, 16)
    assert len(compare["a_images"]) == len(compare["b_images"]) == 1


def test_the_mask_basics_template_runs(tmp_path) -> None:
    """ComfyUI's "mask operations and compositing" node-basics template, as it is (1024 px)."""
    workflow = to_easel(template("basic_mask_operations_and_compositing"))
    (tmp_path / "input").mkdir()
    [loader] = [n for n in workflow["nodes"].values() if n["type"] == "LoadImage"]
    PILImage.new("RGB", (64, 48), (255, 128, 0)).save(
        tmp_path / "input" / loader["inputs"]["image"]
    )
    result = run(workflow, tmp_path)
    previews = [name for entry in result.ui.values() for name in entry.get("files", [])]
    kinds = {workflow["nodes"][node_id]["type"] for node_id in result.ui}
    assert kinds == {"PreviewImage", "PreviewMask"}
    assert len(previews) == len(result.ui) == 18
    # The red EmptyImage pasted through the feathered mask over the black one.
    [composite] = [i for i, n in workflow["nodes"].items() if n["type"] == "ImageCompositeMasked"]
    [preview] = [
        i
        for i, n in workflow["nodes"].items()
        if n["type"] == "PreviewImage" and n["inputs"]["image"] == [composite, "image"]
    ]
    picture = PILImage.open(tmp_path / "output" / result.ui[preview]["files"][0])
    assert picture.size == (1024, 1024)
    red, green, blue = picture.convert("RGB").getpixel((300, 300))
    assert red > 200 and green == blue == 0
