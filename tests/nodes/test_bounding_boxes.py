"""CreateBoundingBoxes (boxes, preview, layout elements), Flux3LayoutPrompt (Flux 3's layout
caption) and how ComfyUI's templates' CreateBoundingBoxes converts."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from easel.core.node import NodeError
from easel.nodes.bounding_boxes import CreateBoundingBoxes
from easel.nodes.flux3 import Flux3LayoutPrompt


class Ctx:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


DRESS = {
    "x": 128,
    "y": 192,
    "width": 736,
    "height": 896,
    "metadata": {"type": "obj", "text": "", "desc": "dress", "palette": []},
}
SIGN = {"x": 0, "y": 0, "width": 448, "height": 100, "metadata": {"type": "text", "text": "OPEN"}}


def boxes(*items: dict[str, Any], width: int = 896, height: int = 1152, **kwargs: Any) -> Any:
    return CreateBoundingBoxes.fn(
        Ctx(), width=width, height=height, boxes=json.dumps(list(items)), **kwargs
    )


def test_boxes_become_elements_with_ids_and_fractions() -> None:
    out = boxes(DRESS, SIGN, dict(DRESS, x=0))
    assert out["bboxes"][0][0]["x"] == 128.0 and len(out["bboxes"]) == 1
    first, sign, second = out["elements"]
    assert (first["id"], sign["id"], second["id"]) == ("obj_1", "text_1", "obj_2")
    assert first["bbox"] == pytest.approx([192 / 1152, 128 / 896, 1088 / 1152, 864 / 896])
    assert first["desc"] == "dress" and sign["text"] == "OPEN"
    preview = out["preview"]
    assert preview.shape == (1, 3, 1152, 896)
    assert preview[0, :, 192, 500].tolist() != [0.5, 0.5, 0.5]  # the outline is drawn
    assert preview[0, :, 600, 500].tolist() == [0.5, 0.5, 0.5]  # inside stays the canvas


def test_linked_boxes_come_first_and_background_is_drawn_over() -> None:
    background = torch.zeros(1, 3, 64, 48)
    out = boxes(DRESS, width=48, height=64, background=background, bboxes=[[SIGN]])
    assert [e["id"] for e in out["elements"]] == ["text_1", "obj_1"]
    assert out["preview"].shape == (1, 3, 64, 48)
    assert float(out["preview"][0, :, 40, 5].sum()) == 0.0  # background where no box runs


@pytest.mark.parametrize(
    "text,kwargs,input_name",
    [
        ("not json", {}, "boxes"),
        (json.dumps([{"x": 1, "y": 2, "width": 0, "height": 4}]), {}, "boxes"),
        (json.dumps([{"x": "a", "y": 2, "width": 3, "height": 4}]), {}, "boxes"),
        ("[]", {"bboxes": "x"}, "bboxes"),
    ],
)
def test_bad_boxes_name_the_input(text: str, kwargs: dict[str, Any], input_name: str) -> None:
    with pytest.raises(NodeError) as caught:
        CreateBoundingBoxes.fn(Ctx(), width=64, height=64, boxes=text, **kwargs)
    assert caught.value.input == input_name


def test_layout_prompt_is_the_caption_then_the_table() -> None:
    """Text to image: rows {id, bbox, desc} on the 0-1000 grid after the caption, as Flux 3's
    prompt upsampler writes them."""
    elements = boxes(DRESS, SIGN)["elements"]
    ctx = Ctx()
    prompt = Flux3LayoutPrompt.fn(
        ctx, text="A woman in a dress <obj_1>", element=elements, mode="auto"
    )
    caption, table = prompt.split(" [", 1)
    assert caption == "A woman in a dress <obj_1>"
    rows = json.loads("[" + table)
    assert rows[0] == {"id": "obj_1", "bbox": [167, 143, 944, 964], "desc": "dress"}
    assert rows[1] == {"id": "text_1", "bbox": [0, 0, 87, 500], "desc": '"OPEN"'}
    assert ctx.warnings and "<text_1>" in ctx.warnings[0]  # not cited by the caption


def test_layout_prompt_for_an_edit_cites_the_reference() -> None:
    """A caption citing <ref_image_0> gets the edit table: from, src_bbox, tgt_bbox."""
    elements = boxes(DRESS)["elements"]
    text = "In <ref_image_0>, change the dress color <obj_1> to red"
    prompt = Flux3LayoutPrompt.fn(Ctx(), text=text, element=elements, mode="auto")
    rows = json.loads(prompt[len(text) + 1 :])
    assert rows == [
        {
            "id": "obj_1",
            "from": "ref_image_0",
            "src_bbox": [167, 143, 944, 964],
            "tgt_bbox": [167, 143, 944, 964],
            "desc": "dress",
        }
    ]
    assert Flux3LayoutPrompt.fn(Ctx(), text=text, element=[], mode="auto") == text
    with pytest.raises(NodeError) as caught:
        Flux3LayoutPrompt.fn(Ctx(), text=" ", element=elements, mode="auto")
    assert caught.value.input == "text"


def test_template_boxes_convert_to_json_text() -> None:
    """The edit template's CreateBoundingBoxes (editor_state a list) converts to Easel's JSON
    text, its UI copy of incoming boxes dropped."""
    from easel.comfy.api_format import convert_prompt

    prompt = {
        "1": {
            "class_type": "CreateBoundingBoxes",
            "inputs": {"width": 896, "height": 1152, "editor_state": [DRESS], "last_incoming": []},
        }
    }
    node = convert_prompt(prompt)["nodes"]["1"]
    assert node["type"] == "CreateBoundingBoxes"
    assert json.loads(node["inputs"]["boxes"]) == [DRESS]
    assert "last_incoming" not in node["inputs"]
