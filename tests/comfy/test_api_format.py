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
    basic["10"] = {
        "class_type": "FreeU_V2",
        "inputs": {"model": ["4", 0], "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2},
    }
    basic["11"] = {
        "class_type": "DiffControlNetLoader",
        "inputs": {"model": ["4", 0], "control_net_name": "diff_canny.safetensors"},
    }
    basic["3"]["inputs"]["model"] = ["10", 0]
    problems = problems_of(basic)
    listed = [(p.node, p.node_type) for p in problems if p.node is not None]
    assert listed == [("10", "FreeU_V2"), ("11", "DiffControlNetLoader")]
    message = str(WorkflowError(problems))
    assert "node '10' (FreeU_V2): ComfyUI node type 'FreeU_V2' has no Easel equivalent" in message
    # DiffControlNetLoader gets a reason of its own that says what to use instead.
    assert "DiffControlNetLoader (a ControlNet stored as the difference" in message
    assert "use ControlNetLoader" in message
    assert "CheckpointLoaderSimple" in message  # what does convert
    # The link from the sampler to the unsupported node adds no second complaint.
    assert not any(p.node == "3" for p in problems)


def _advanced(
    add_noise: str, start: int, end: int, leftover: str, steps: int = 20, latent: list | None = None
) -> dict[str, Any]:
    return {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": add_noise,
            "noise_seed": 1,
            "steps": steps,
            "cfg": 7,
            "sampler_name": "dpmpp_2m_sde_gpu",
            "scheduler": "karras",
            "start_at_step": start,
            "end_at_step": end,
            "return_with_leftover_noise": leftover,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": latent or ["5", 0],
        },
    }


def test_split_sampling_converts_exactly(basic) -> None:
    basic["3"] = _advanced("enable", 0, 12, "enable")
    basic["20"] = _advanced("disable", 12, 10000, "disable", latent=["3", 0])
    basic["8"]["inputs"]["samples"] = ["20", 0]
    nodes = to_easel(basic)["nodes"]
    assert nodes["3"] == {
        "type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": True,
            "seed": 1,
            "steps": 20,
            "cfg": 7,
            "sampler_name": "dpmpp_2m_sde",
            "scheduler": "karras",
            "start_at_step": 0,
            "end_at_step": 12,
            "return_with_leftover_noise": True,
            "model": ["4", "model"],
            "positive": ["6", "conditioning"],
            "negative": ["7", "conditioning"],
            "latent": ["5", "latent"],
        },
    }
    second = nodes["20"]["inputs"]
    assert (
        second["add_noise"],
        second["start_at_step"],
        second["end_at_step"],
        second["return_with_leftover_noise"],
    ) == (False, 12, 10000, False)
    assert second["latent"] == ["3", "latent"]
    assert nodes["8"]["inputs"]["latent"] == ["20", "latent"]


def test_switch_values_other_than_enable_or_disable_are_refused(basic) -> None:
    basic["3"] = _advanced("sometimes", 0, 10000, "disable")
    problems = problems_of(basic)
    assert [(p.node, p.input) for p in problems] == [("3", "add_noise")]
    assert (
        "'sometimes' has no Easel equivalent (convertible: disable, enable)" in problems[0].message
    )


def test_chained_passthrough_samplers_resolve_to_the_source(basic) -> None:
    for node_id, source in (("20", ["5", 0]), ("21", ["20", 0])):
        basic[node_id] = {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "add_noise": "disable",
                "noise_seed": 1,
                "steps": 10,
                "cfg": 7,
                "sampler_name": "euler",
                "scheduler": "normal",
                "start_at_step": 10,
                "end_at_step": 10000,
                "return_with_leftover_noise": "disable",
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": source,
            },
        }
    basic["3"]["inputs"]["latent_image"] = ["21", 0]
    nodes = to_easel(basic)["nodes"]
    assert "20" not in nodes and "21" not in nodes
    assert nodes["3"]["inputs"]["latent"] == ["5", "latent"]


def test_links_to_outputs_without_equivalent_are_named(basic) -> None:
    basic["12"] = {"class_type": "LoadImage", "inputs": {"image": "a.png", "upload": "image"}}
    basic["13"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 2]}}  # no slot 2
    basic["14"] = {"class_type": "PreviewImage", "inputs": {"images": ["99", 0]}}
    problems = problems_of(basic)
    assert [(p.node, p.input) for p in problems] == [("13", "images"), ("14", "images")]
    assert "output slot 2 of node '12' (LoadImage)" in problems[0].message
    assert "'99', which is not in the workflow" in problems[1].message


def test_values_with_no_equivalent_are_refused(basic) -> None:
    basic["10"] = {
        "class_type": "LatentUpscale",
        "inputs": {
            "samples": ["3", 0],
            "upscale_method": "bislerp",
            "width": 1024,
            "height": 1024,
            "crop": "center",
        },
    }
    problems = problems_of(basic)
    assert [(p.node, p.input) for p in problems] == [("10", "upscale_method"), ("10", "crop")]


def test_upscale_variants_map_onto_easel_upscalers(basic) -> None:
    basic["10"] = {
        "class_type": "LatentUpscaleBy",
        "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": 1.5},
    }
    basic["11"] = {
        "class_type": "ImageScaleBy",
        "inputs": {"image": ["8", 0], "upscale_method": "lanczos", "scale_by": 2},
    }
    basic["12"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["8", 0],
            "upscale_method": "area",
            "width": 640,
            "height": 480,
            "crop": "disabled",
        },
    }
    nodes = to_easel(basic)["nodes"]
    assert nodes["10"] == {
        "type": "LatentUpscale",
        "inputs": {"latent": ["3", "latent"], "method": "nearest-exact", "scale": 1.5},
    }
    assert nodes["11"] == {
        "type": "Upscale",
        "inputs": {"image": ["8", "image"], "method": "lanczos", "scale": 2},
    }
    # Easel scales when no size is given; ComfyUI keeps the size: scale 1 says the same.
    assert nodes["12"] == {
        "type": "Upscale",
        "inputs": {
            "image": ["8", "image"],
            "method": "area",
            "width": 640,
            "height": 480,
            "scale": 1.0,
        },
    }


def test_unknown_inputs_are_reported_not_dropped(basic) -> None:
    basic["3"]["inputs"]["noise_offset"] = 0.1
    problems = problems_of(basic)
    assert [(p.node, p.input) for p in problems] == [("3", "noise_offset")]


def test_integer_ids_literal_lists_and_primitive_nodes() -> None:
    prompt = {
        1: {"class_type": "PrimitiveInt", "inputs": {"value": 77}},
        2: {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
        3: {"class_type": "SaveImage", "inputs": {"images": [4, 0], "filename_prefix": ["2", 0]}},
        4: {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
    }
    nodes = to_easel(prompt)["nodes"]
    assert nodes["1"] == {"type": "Int", "inputs": {"value": 77}}
    assert nodes["3"]["inputs"] == {"image": ["4", "image"], "filename_prefix": ["2", "value"]}


def test_not_a_comfy_workflow() -> None:
    with pytest.raises(WorkflowError, match="not a ComfyUI workflow"):
        to_easel({"hello": 1})


def test_broken_entries_are_reported() -> None:
    problems = problems_of(
        {
            "1": {"class_type": "SaveImage", "inputs": "oops"},
            "2": {"class_type": "CLIPTextEncode", "inputs": {}},
            "3": {"class_type": 5},
        }
    )
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


# One row per newly mapped ComfyUI node: its API-format inputs and the Easel node it becomes.
NEW_NODES = [
    (
        {
            "class_type": "CheckpointLoader",
            "inputs": {"config_name": "v1-inference.yaml", "ckpt_name": "sd15/dream.safetensors"},
        },
        {"type": "CheckpointLoader", "inputs": {"name": "sd15/dream.safetensors"}},
    ),
    (
        {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
        {"type": "VAELoader", "inputs": {"name": "sdxl_vae.safetensors"}},
    ),
    (
        {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["4", 0],
                "clip": ["4", 1],
                "lora_name": "styles/ink.safetensors",
                "strength_model": 0.8,
                "strength_clip": 0.6,
            },
        },
        {
            "type": "LoraLoader",
            "inputs": {
                "model": ["4", "model"],
                "clip": ["4", "clip"],
                "name": "styles/ink.safetensors",
                "strength_model": 0.8,
                "strength_clip": 0.6,
            },
        },
    ),
    (
        {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": ["4", 0], "lora_name": "lcm.safetensors", "strength_model": 1.0},
        },
        {
            "type": "LoraLoaderModelOnly",
            "inputs": {"model": ["4", "model"], "name": "lcm.safetensors", "strength_model": 1.0},
        },
    ),
    (
        {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": -2}},
        {"type": "CLIPSetLastLayer", "inputs": {"clip": ["4", "clip"], "stop_at_clip_layer": -2}},
    ),
    (
        {
            "class_type": "CLIPTextEncodeSDXL",
            "inputs": {
                "clip": ["4", 1],
                "width": 4096,
                "height": 4096,
                "crop_w": 0,
                "crop_h": 0,
                "target_width": 1024,
                "target_height": 1024,
                "text_g": "a fox",
                "text_l": "a fox",
            },
        },
        {
            "type": "TextEncodeSDXL",
            "inputs": {
                "clip": ["4", "clip"],
                "width": 4096,
                "height": 4096,
                "crop_w": 0,
                "crop_h": 0,
                "target_width": 1024,
                "target_height": 1024,
                "text_g": "a fox",
                "text_l": "a fox",
            },
        },
    ),
    (
        {
            "class_type": "CLIPTextEncodeSDXLRefiner",
            "inputs": {
                "clip": ["4", 1],
                "ascore": 6.0,
                "width": 1024,
                "height": 1024,
                "text": "a fox",
            },
        },
        {
            "type": "TextEncodeSDXLRefiner",
            "inputs": {
                "clip": ["4", "clip"],
                "ascore": 6.0,
                "width": 1024,
                "height": 1024,
                "text": "a fox",
            },
        },
    ),
    (
        {
            "class_type": "ControlNetLoader",
            "inputs": {"control_net_name": "control_v11p_sd15_canny.pth"},
        },
        {"type": "ControlNetLoader", "inputs": {"name": "control_v11p_sd15_canny.pth"}},
    ),
    (
        {
            "class_type": "ControlNetApply",
            "inputs": {
                "conditioning": ["6", 0],
                "control_net": ["30", 0],
                "image": ["31", 0],
                "strength": 0.9,
            },
        },
        {
            "type": "ControlNetApply",
            "inputs": {
                "conditioning": ["6", "conditioning"],
                "control_net": ["30", "control_net"],
                "image": ["31", "image"],
                "strength": 0.9,
            },
        },
    ),
    (
        {
            "class_type": "ControlNetApplyAdvanced",
            "inputs": {
                "positive": ["6", 0],
                "negative": ["7", 0],
                "control_net": ["30", 0],
                "image": ["31", 0],
                "strength": 1.0,
                "start_percent": 0.0,
                "end_percent": 0.5,
                "vae": ["4", 2],
            },
        },
        {
            "type": "ControlNetApplyAdvanced",
            "inputs": {
                "positive": ["6", "conditioning"],
                "negative": ["7", "conditioning"],
                "control_net": ["30", "control_net"],
                "image": ["31", "image"],
                "strength": 1.0,
                "start_percent": 0.0,
                "end_percent": 0.5,
                "vae": ["4", "vae"],
            },
        },
    ),
    (
        {"class_type": "LoadImage", "inputs": {"image": "dog.png", "upload": "image"}},
        {"type": "LoadImage", "inputs": {"image": "dog.png"}},
    ),
    (
        {
            "class_type": "VAEEncodeForInpaint",
            "inputs": {"pixels": ["31", 0], "vae": ["4", 2], "mask": ["31", 1], "grow_mask_by": 6},
        },
        {
            "type": "VAEEncodeForInpaint",
            "inputs": {
                "image": ["31", "image"],
                "vae": ["4", "vae"],
                "mask": ["31", "mask"],
                "grow_mask_by": 6,
            },
        },
    ),
    (
        {
            "class_type": "InpaintModelConditioning",
            "inputs": {
                "positive": ["6", 0],
                "negative": ["7", 0],
                "vae": ["4", 2],
                "pixels": ["31", 0],
                "mask": ["31", 1],
                "noise_mask": False,
            },
        },
        {
            "type": "InpaintModelConditioning",
            "inputs": {
                "positive": ["6", "conditioning"],
                "negative": ["7", "conditioning"],
                "vae": ["4", "vae"],
                "image": ["31", "image"],
                "mask": ["31", "mask"],
                "noise_mask": False,
            },
        },
    ),
    # Saved before ComfyUI had noise_mask: the latent always carried the mask.
    (
        {
            "class_type": "InpaintModelConditioning",
            "inputs": {
                "positive": ["6", 0],
                "negative": ["7", 0],
                "vae": ["4", 2],
                "pixels": ["31", 0],
                "mask": ["31", 1],
            },
        },
        {
            "type": "InpaintModelConditioning",
            "inputs": {
                "positive": ["6", "conditioning"],
                "negative": ["7", "conditioning"],
                "vae": ["4", "vae"],
                "image": ["31", "image"],
                "mask": ["31", "mask"],
                "noise_mask": True,
            },
        },
    ),
    (
        {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["5", 0], "mask": ["31", 1]}},
        {
            "type": "SetLatentNoiseMask",
            "inputs": {"latent": ["5", "latent"], "mask": ["31", "mask"]},
        },
    ),
    (
        {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "RealESRGAN_x4plus.pth"}},
        {"type": "UpscaleModelLoader", "inputs": {"name": "RealESRGAN_x4plus.pth"}},
    ),
    (
        {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["32", 0], "image": ["8", 0]},
        },
        {
            "type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["32", "upscale_model"], "image": ["8", "image"]},
        },
    ),
    (
        {
            "class_type": "ModelSamplingDiscrete",
            "inputs": {"model": ["4", 0], "sampling": "v_prediction", "zsnr": True},
        },
        {
            "type": "ModelSamplingDiscrete",
            "inputs": {"model": ["4", "model"], "sampling": "v_prediction", "zsnr": True},
        },
    ),
]


@pytest.mark.parametrize(
    ("comfy", "easel"),
    NEW_NODES,
    ids=[f"{row[0]['class_type']}-{i}" for i, row in enumerate(NEW_NODES)],
)
def test_real_checkpoint_nodes_map_one_to_one(basic, comfy, easel) -> None:
    basic["30"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "c.pth"}}
    basic["31"] = {"class_type": "LoadImage", "inputs": {"image": "a.png"}}
    basic["32"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "x.pth"}}
    basic["40"] = copy.deepcopy(comfy)
    assert to_easel(basic)["nodes"]["40"] == easel


def test_model_sampling_other_than_eps_and_v_is_refused(basic) -> None:
    basic["10"] = {
        "class_type": "ModelSamplingDiscrete",
        "inputs": {"model": ["4", 0], "sampling": "lcm", "zsnr": False},
    }
    problems = problems_of(basic)
    assert [(p.node, p.input) for p in problems] == [("10", "sampling")]
    assert problems[0].message == ("'lcm' has no Easel equivalent (convertible: eps, v_prediction)")


def test_boxed_list_values_from_the_frontend_are_unboxed(basic) -> None:
    basic["9"]["inputs"]["filename_prefix"] = {"__value__": ["a", "b"]}
    nodes = to_easel(basic)["nodes"]
    assert nodes["9"]["inputs"]["filename_prefix"] == {"value": ["a", "b"]}


def test_extra_maps_add_plugin_nodes_but_never_replace_built_ins(basic) -> None:
    from easel.comfy.mapping import NodeMap, merged_node_maps

    basic["10"] = {"class_type": "Sharpen", "inputs": {"image": ["8", 0], "radius": 2}}
    extra = {
        "Sharpen": NodeMap(
            "ImageSharpen", {"image": "image", "radius": "radius"}, ("image",), widgets=("radius",)
        )
    }
    nodes = to_easel(basic, extra_maps=extra)["nodes"]
    assert nodes["10"] == {"type": "ImageSharpen", "inputs": {"image": ["8", "image"], "radius": 2}}
    with pytest.raises(ValueError, match="already mapped by Easel: KSampler"):
        merged_node_maps({"KSampler": extra["Sharpen"]})
    # Through the converter (the server's path) a bad plugin mapping is a problem, not a 500.
    with pytest.raises(
        WorkflowError,
        match=r"a plugin's ComfyUI mapping is refused: .*Sharpen "
        r"are not easel\.comfy\.mapping\.NodeMap",
    ):
        to_easel(basic, extra_maps={"Sharpen": {"easel_type": "ImageSharpen"}})
    with pytest.raises(WorkflowError, match="'Sharpen' has no Easel equivalent"):
        to_easel(basic)
