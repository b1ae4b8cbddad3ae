"""Workflows embedded in images: Easel's chunk round trip, ComfyUI's PNG and WebP metadata."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from easel.comfy.convert import to_easel
from easel.core.graph import WorkflowError
from easel.pngmeta import WORKFLOW_KEY, png_info, read_text_chunks, workflow_from_png
from easel.workflow_files import read_workflow, read_workflow_bytes
from tests.comfy.conftest import DATA, SHARED_COMFY, load_json

EASEL_FLOW = {
    "format": "easel.workflow",
    "version": 1,
    "nodes": {
        "p": {
            "type": "TextEncode",
            "inputs": {"clip": ["m", "clip"], "text": '灯塔 ünïcödé "quoted"\nline two'},
        }
    },
    "ui": {"positions": {"p": [1, 2]}},
}


def comfy_png(path: Path, prompt: Any = None, workflow: Any = None) -> Path:
    """A PNG written the way ComfyUI's SaveImage writes one (tEXt "prompt" and "workflow")."""
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    if workflow is not None:
        info.add_text("workflow", json.dumps(workflow))
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    return path


def test_easel_chunk_round_trip_keeps_any_text(tmp_path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=png_info(EASEL_FLOW, "a prompt\nSteps: 4"))
    chunks = read_text_chunks(path)
    assert set(chunks) == {WORKFLOW_KEY, "parameters"}
    assert chunks[WORKFLOW_KEY].isascii()  # plain tEXt, readable by any PNG parser
    assert workflow_from_png(path) == EASEL_FLOW
    assert read_workflow(path) == EASEL_FLOW  # what `easel run a.png` loads


def test_comfy_png_runs_the_prompt_with_editor_layout(tmp_path) -> None:
    prompt = load_json(SHARED_COMFY / "comfyui_script_examples_basic_api_example.api.json")
    editor = load_json(DATA / "ui_default_plus.json")
    path = comfy_png(tmp_path / "ComfyUI_00001_.png", prompt, editor)
    workflow = workflow_from_png(path)
    expected = to_easel(prompt)
    assert workflow["nodes"] == expected["nodes"]
    # Same ids in both graphs, so the editor's positions and titles apply.
    assert workflow["ui"]["positions"]["3"] == [863.0, 186.0]
    assert workflow["ui"]["titles"] == {"3": "Main sampler"}
    assert workflow["ui"]["notes"]["10"]["text"].startswith("Seed 42")


def test_comfy_png_with_only_the_editor_graph(tmp_path) -> None:
    editor = load_json(DATA / "ui_default_plus.json")
    path = comfy_png(tmp_path / "ui_only.png", workflow=editor)
    assert workflow_from_png(path) == to_easel(editor)


def test_unconvertible_editor_graph_does_not_block_the_prompt(tmp_path) -> None:
    prompt = load_json(SHARED_COMFY / "ericHuang_img2img.api.json")
    editor = {"nodes": [{"id": 1, "type": "SomeCustomNode"}], "links": []}
    workflow = workflow_from_png(comfy_png(tmp_path / "x.png", prompt, editor))
    assert workflow["nodes"] == to_easel(prompt)["nodes"]


def test_easel_chunk_wins_over_comfy_chunks(tmp_path) -> None:
    info = png_info(EASEL_FLOW)
    info.add_text("prompt", json.dumps({"1": {"class_type": "Nope", "inputs": {}}}))
    path = tmp_path / "both.png"
    Image.new("RGB", (2, 2)).save(path, pnginfo=info)
    assert workflow_from_png(path) == EASEL_FLOW


def test_comfy_webp_exif_metadata(tmp_path) -> None:
    """ComfyUI's WebP saver puts "prompt:{...}" and "workflow:{...}" into EXIF strings."""
    prompt = load_json(SHARED_COMFY / "comfyui_script_examples_basic_api_example.api.json")
    picture = Image.new("RGB", (4, 4))
    exif = picture.getexif()
    exif[0x0110] = "prompt:" + json.dumps(prompt)
    path = tmp_path / "ComfyUI_00001_.webp"
    picture.save(path, exif=exif)
    assert workflow_from_png(path)["nodes"] == to_easel(prompt)["nodes"]


def test_uploaded_bytes_of_images_and_json() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="PNG", pnginfo=png_info(EASEL_FLOW))
    assert read_workflow_bytes(buffer.getvalue(), "drop.png") == EASEL_FLOW
    text = (SHARED_COMFY / "ericHuang_img2img.api.json").read_bytes()
    assert read_workflow_bytes(text, "img2img.json")["nodes"]["6"]["type"] == "KSampler"
    with pytest.raises(WorkflowError, match="neither a JSON workflow nor an image"):
        read_workflow_bytes(b"\xff\xfe\x00garbage", "blob.bin")


def test_image_without_workflow(tmp_path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (2, 2)).save(path)
    with pytest.raises(WorkflowError, match="has no workflow embedded"):
        read_workflow(path)


def test_broken_json_in_a_chunk(tmp_path) -> None:
    info = PngInfo()
    info.add_text("prompt", "{not json")
    path = tmp_path / "broken.png"
    Image.new("RGB", (2, 2)).save(path, pnginfo=info)
    with pytest.raises(WorkflowError, match=r"'prompt' metadata of .* is not valid JSON"):
        workflow_from_png(path)


def test_truncated_png_is_a_workflow_error(tmp_path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG", pnginfo=png_info(EASEL_FLOW))
    with pytest.raises(WorkflowError):
        read_workflow_bytes(buffer.getvalue()[:60], "cut.png")
