"""Converter rules on small API-format prompts: errors, advanced sampler ranges, values."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from easel.comfy.convert import set_checkpoint, to_easel
from easel.core.graph import WorkflowError
from tests.comfy.conftest import SHARED_COMFY, load_json


@pytest.fixture
def basic() -> dict[str, Any]:
    return load_json(SHARED_COMFY / "comfyui_script_examples_basic_api_example.api.json")


def problems_of(data: Any) -> list:
    with pytest.raises(WorkflowError) as caught:
        to_easel(data)
    return caught.value.problems


def test_unsupported_nodes_all_listed_at_once(basic) -> None:
    basic["10"] = {"class_type": "LoraLoader", "inputs": {
        "lora_name": "x.safetensors", "strength_model": 1, "strength_clip": 1,
        "model": ["4", 0], "clip": ["4", 1]}}
    basic["11"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}}
    basic["3"]["inputs"]["model"] = ["10", 0]
    problems = problems_of(basic)
    listed = [(p.node, p.node_type) for p in problems if p.node is not None]
    assert listed == [("10", "LoraLoader"), ("11", "UpscaleModelLoader")]
    message = str(WorkflowError(problems))
    assert "node '10' (LoraLoader): ComfyUI node type 'LoraLoader' has no Easel equivalent" \
        in message
    assert "CheckpointLoaderSimple" in message  # what does convert
    # The link from the sampler to the unsupported loader adds no second complaint.
    assert not any(p.node == "3" for p in problems)


def test_split_sampling_is_refused_not_approximated(basic) -> None:
    basic["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "add_noise": "enable", "noise_seed": 1, "steps": 20, "cfg": 7, "sampler_name": "euler",
        "scheduler": "normal", "start_at_step": 0, "end_at_step": 12,
        "return_with_leftover_noise": "enable", "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}}
    problems = problems_of(basic)
    assert [(p.node, p.input) for p in problems] == [("3", "start_at_step")]
    assert "steps 0 to 12 of 20" in problems[0].message


def test_advanced_sampler_without_noise_is_refused(basic) -> None:
    basic["3"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "add_noise": "disable", "noise_seed": 1, "steps": 20, "cfg": 7, "sampler_name": "euler",
        "scheduler": "normal", "start_at_step": 0, "end_at_step": 10000,
        "return_with_leftover_noise": "disable", "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}}
    assert [(p.node, p.input) for p in problems_of(basic)] == [("3", "add_noise")]


def test_chained_passthrough_samplers_resolve_to_the_source(basic) -> None:
    for node_id, source in (("20", ["5", 0]), ("21", ["20", 0])):
        basic[node_id] = {"class_type": "KSamplerAdvanced", "inputs": {
            "add_noise": "disable", "noise_seed": 1, "steps": 10, "cfg": 7,
            "sampler_name": "euler", "scheduler": "normal", "start_at_step": 10,
            "end_at_step": 10000, "return_with_leftover_noise": "disable",
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": source}}
    basic["3"]["inputs"]["latent_image"] = ["21", 0]
    nodes = to_easel(basic)["nodes"]
    assert "20" not in nodes and "21" not in nodes
    assert nodes["3"]["inputs"]["latent"] == ["5", "latent"]


def test_links_to_outputs_without_equivalent_are_named(basic) -> None:
    basic["12"] = {"class_type": "LoadImage", "inputs": {"image": "a.png", "upload": "image"}}
    basic["13"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 1]}}  # the MASK
    basic["14"] = {"class_type": "PreviewImage", "inputs": {"images": ["99", 0]}}
    problems = problems_of(basic)
    assert [(p.node, p.input) for p in problems] == [("13", "images"), ("14", "images")]
    assert "output slot 1 of node '12' (LoadImage)" in problems[0].message
    assert "'99', which is not in the workflow" in problems[1].message


def test_values_with_no_equivalent_are_refused(basic) -> None:
    basic["10"] = {"class_type": "LatentUpscale", "inputs": {
        "samples": ["3", 0], "upscale_method": "bislerp", "width": 1024, "height": 1024,
        "crop": "center"}}
    problems = problems_of(basic)
    assert [(p.node, p.input) for p in problems] == [("10", "upscale_method"), ("10", "crop")]


def test_upscale_variants_map_onto_easel_upscalers(basic) -> None:
    basic["10"] = {"class_type": "LatentUpscaleBy",
                   "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact",
                              "scale_by": 1.5}}
    basic["11"] = {"class_type": "ImageScaleBy",
                   "inputs": {"image": ["8", 0], "upscale_method": "lanczos", "scale_by": 2}}
    basic["12"] = {"class_type": "ImageScale", "inputs": {
        "image": ["8", 0], "upscale_method": "area", "width": 640, "height": 480,
        "crop": "disabled"}}
    nodes = to_easel(basic)["nodes"]
    assert nodes["10"] == {"type": "LatentUpscale", "inputs": {
        "latent": ["3", "latent"], "method": "nearest-exact", "scale": 1.5}}
    assert nodes["11"] == {"type": "Upscale", "inputs": {
        "image": ["8", "image"], "method": "lanczos", "scale": 2}}
    # Easel scales when no size is given; ComfyUI keeps the size: scale 1 says the same.
    assert nodes["12"] == {"type": "Upscale", "inputs": {
        "image": ["8", "image"], "method": "area", "width": 640, "height": 480, "scale": 1.0}}


def test_unknown_inputs_are_reported_not_dropped(basic) -> None:
    basic["3"]["inputs"]["noise_offset"] = 0.1
    problems = problems_of(basic)
    assert [(p.node, p.input) for p in problems] == [("3", "noise_offset")]


def test_integer_ids_literal_lists_and_primitive_nodes() -> None:
    prompt = {
        1: {"class_type": "PrimitiveInt", "inputs": {"value": 77}},
        2: {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
        3: {"class_type": "SaveImage", "inputs": {"images": [4, 0],
                                                   "filename_prefix": ["2", 0]}},
        4: {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
    }
    nodes = to_easel(prompt)["nodes"]
    assert nodes["1"] == {"type": "Int", "inputs": {"value": 77}}
    assert nodes["3"]["inputs"] == {"image": ["4", "image"], "filename_prefix": ["2", "value"]}


def test_not_a_comfy_workflow() -> None:
    with pytest.raises(WorkflowError, match="not a ComfyUI workflow"):
        to_easel({"hello": 1})


def test_broken_entries_are_reported() -> None:
    problems = problems_of({"1": {"class_type": "SaveImage", "inputs": "oops"},
                            "2": {"class_type": "CLIPTextEncode", "inputs": {}},
                            "3": {"class_type": 5}})
    assert [(p.node, p.message) for p in problems] == [
        ("3", "not a ComfyUI node: expected an object with 'class_type' and 'inputs'"),
        ("1", "'inputs' must be an object"),
    ]


def test_set_checkpoint_changes_every_loader(basic) -> None:
    workflow = to_easel(basic)
    second = copy.deepcopy(workflow["nodes"]["4"])
    workflow["nodes"]["40"] = second
    assert set_checkpoint(workflow, "easel-shapes") == ["4", "40"]
    assert {workflow["nodes"][n]["inputs"]["name"] for n in ("4", "40")} == {"easel-shapes"}
