"""A UI-format node that feeds nothing, is no output and has a socket left unconnected (a
spare node left in a template) is dropped: ComfyUI never runs or checks it, and here it would
fail validation. A complete node that feeds nothing stays, as ComfyUI keeps it unrun."""

from __future__ import annotations

from typing import Any

from easel.comfy.convert import to_easel
from tests.comfy.conftest import DATA, load_json


def with_spare_nodes() -> dict[str, Any]:
    data = load_json(DATA / "sd15_controlnet.json")
    data["nodes"] += [
        {  # ComfyUI's image_anima_lllite_image_inpainting keeps one like this
            "id": 41,
            "type": "ImageInvert",
            "mode": 0,
            "pos": [0, 0],
            "inputs": [{"name": "image", "type": "IMAGE", "link": None}],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [91]}],
        },
        {  # fed only by the spare node above: a dead end once it goes
            "id": 42,
            "type": "ImageInvert",
            "mode": 0,
            "pos": [0, 0],
            "inputs": [{"name": "image", "type": "IMAGE", "link": 91}],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}],
        },
        {  # complete, feeding nothing: kept
            "id": 43,
            "type": "EmptyLatentImage",
            "mode": 0,
            "pos": [0, 0],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}],
            "widgets_values": [512, 512, 1],
        },
    ]
    data["links"].append([91, 41, 0, 42, 0, "IMAGE"])
    return data


def test_incomplete_dead_ends_are_dropped_and_complete_ones_kept() -> None:
    before = to_easel(load_json(DATA / "sd15_controlnet.json"))["nodes"]
    nodes = to_easel(with_spare_nodes())["nodes"]
    assert "41" not in nodes  # its image socket is unconnected and it feeds nothing
    # 42 lost its only input with 41 and feeds nothing: gone too
    assert "42" not in nodes
    assert nodes["43"]["type"] == "EmptyLatent"
    assert {k: v for k, v in nodes.items() if k != "43"} == before
