"""The small utility nodes of ComfyUI's templates: JsonExtractString, StringFormat,
CustomCombo, SetFirstSigma, GrowMask, ImageBlur and ImageBlend, as ComfyUI computes them, and
how they (and TextGenerate's dynamic widgets) convert from ComfyUI's files."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from easel.comfy.convert import to_easel
from easel.core.context import Context
from easel.core.graph import WorkflowError
from easel.core.node import NodeError
from easel.nodes.image_filters import BlendImages, BlurImage, GrowMask
from easel.nodes.json_utils import ExtractJsonValue, FormatText
from easel.nodes.template_utils import Choice, SetFirstSigma


def call(node_type: Any, **inputs: Any) -> dict[str, Any]:
    return node_type.call(Context(), {**node_type.value_defaults, **inputs})


# -- text --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('{"prompt": "a red fox", "n": 2}', "prompt", "a red fox"),
        ('Sure!\n```json\n{"prompt": "a fox"}\n```', "prompt", "a fox"),
        ('{not json} then {"prompt": "second"}', "prompt", "second"),
        ('{"prompt": null}', "prompt", ""),
        ('{"other": 1}', "prompt", ""),
        ("no object at all", "prompt", ""),
        ('{"n": 2, "ok": true, "list": [1, "a"]}', "ok", "True"),  # str(), as ComfyUI
        ('{"n": 2, "list": [1, "a"]}', "list", "[1, 'a']"),
        ('{"outer": {"prompt": "inner"}}', "prompt", ""),  # the first object only
    ],
)
def test_extract_json_value(text: str, key: str, expected: str) -> None:
    assert call(ExtractJsonValue, json_string=text, key=key)["text"] == expected


def test_format_text_formats_linked_values() -> None:
    out = call(FormatText, f_string="cx: {a:.3f}, {b} x {c} px {{literal}}", a=0.5, b=3, c="w")
    assert out["text"] == "cx: 0.500, 3 x w px {literal}"
    assert call(FormatText, f_string="{a!r}", a="x")["text"] == "'x'"


@pytest.mark.parametrize(
    ("f_string", "values", "input_name"),
    [
        ("{a.__class__}", {"a": 1}, "f_string"),
        ("{a[0]}", {"a": "xy"}, "f_string"),
        ("{0}", {"a": 1}, "f_string"),
        ("{}", {"a": 1}, "f_string"),
        ("{b}", {"a": 1}, "b"),
        ("{a:>99999999}", {"a": 1}, "f_string"),
        ("{a:{b}}", {"a": 1, "b": 3}, "f_string"),
        ("{a:.3f}", {"a": "text"}, "f_string"),
        ("{a", {"a": 1}, "f_string"),
    ],
)
def test_format_text_refuses_what_it_must(f_string: str, values: dict, input_name: str) -> None:
    with pytest.raises(NodeError) as caught:
        call(FormatText, f_string=f_string, **values)
    assert caught.value.input == input_name


def test_choice_and_set_first_sigma() -> None:
    assert call(Choice, choice="16:9", index=1) == {"text": "16:9", "index": 1}
    sigmas = torch.tensor([1.0, 0.5, 0.0])
    out = call(SetFirstSigma, sigmas=sigmas, sigma=999.0)["sigmas"]
    assert out.dtype == torch.float32 and out.tolist() == [999.0, 0.5, 0.0]
    assert sigmas.tolist() == [1.0, 0.5, 0.0]  # the input is not changed
    with pytest.raises(NodeError) as caught:
        call(SetFirstSigma, sigmas=torch.zeros(0), sigma=1.0)
    assert caught.value.input == "sigmas"


# -- masks and images --------------------------------------------------------------------------
@pytest.mark.parametrize("expand", [3, -2, 0])
@pytest.mark.parametrize("tapered", [True, False])
def test_grow_mask_equals_scipy_grey_morphology(expand: int, tapered: bool) -> None:
    """ComfyUI's GrowMask: `expand` scipy.ndimage grey dilations (erosions) with a 3x3
    footprint, a cross when tapered."""
    from scipy import ndimage

    torch.manual_seed(0)
    mask = (torch.rand(2, 11, 13) > 0.8).float() * torch.rand(2, 11, 13)
    if expand < 0:
        mask = 1.0 - mask
    c = 0 if tapered else 1
    footprint = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]])
    expected = []
    for plane in mask.numpy():
        for _ in range(abs(expand)):
            morph = ndimage.grey_dilation if expand > 0 else ndimage.grey_erosion
            plane = morph(plane, footprint=footprint)
        expected.append(plane)
    out = call(GrowMask, mask=mask, expand=expand, tapered_corners=tapered)["mask"]
    assert torch.equal(out, torch.from_numpy(np.stack(expected)))


def test_grow_mask_stops_early_when_nothing_changes_any_more() -> None:
    mask = torch.zeros(1, 5, 6)
    mask[0, 2, 3] = 1.0
    assert torch.equal(call(GrowMask, mask=mask, expand=16384)["mask"], torch.ones(1, 5, 6))


def test_blur_image_is_comfyuis_kernel_with_mirrored_edges() -> None:
    from scipy import ndimage

    torch.manual_seed(1)
    image = torch.rand(2, 3, 9, 10)
    radius, sigma = 2, 0.7
    axis = np.linspace(-1, 1, 2 * radius + 1)
    kernel = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    expected = np.stack(
        [
            [ndimage.correlate(plane, kernel, mode="mirror") for plane in item]
            for item in image.double().numpy()
        ]
    )
    out = call(BlurImage, image=image, blur_radius=radius, sigma=sigma)["image"]
    assert out.shape == image.shape
    assert np.abs(out.double().numpy() - expected).max() < 1e-6
    with pytest.raises(NodeError) as caught:
        call(BlurImage, image=image, blur_radius=9)
    assert caught.value.input == "blur_radius"


@pytest.mark.parametrize(
    ("mode", "formula"),
    [
        ("normal", lambda a, b: b),
        ("multiply", lambda a, b: a * b),
        ("screen", lambda a, b: 1 - (1 - a) * (1 - b)),
        ("overlay", lambda a, b: np.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))),
        (
            "soft_light",
            lambda a, b: np.where(
                b <= 0.5,
                a - (1 - 2 * b) * a * (1 - a),
                a
                + (2 * b - 1) * (np.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, np.sqrt(a)) - a),
            ),
        ),
        ("difference", lambda a, b: a - b),
    ],
)
def test_blend_images_modes(mode: str, formula: Any) -> None:
    torch.manual_seed(2)
    a, b = torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5)
    factor = 0.3
    expected = np.clip(a.numpy() * (1 - factor) + formula(a.numpy(), b.numpy()) * factor, 0, 1)
    out = call(BlendImages, image1=a, image2=b, blend_factor=factor, blend_mode=mode)["image"]
    assert np.abs(out.numpy() - expected).max() < 1e-6


def test_blend_images_fits_image2_to_image1_and_keeps_its_alpha() -> None:
    from easel.nodes.upscale import center_crop, resample

    torch.manual_seed(3)
    rgba = torch.rand(1, 4, 8, 8)
    rgb = torch.rand(1, 3, 6, 12)
    out = call(BlendImages, image1=rgba, image2=rgb, blend_factor=1.0, blend_mode="multiply")
    fitted = resample(center_crop(rgb, 8, 8), (8, 8), "bicubic")
    assert torch.allclose(out["image"][:, :3], (rgba[:, :3] * fitted).clamp(0, 1), atol=1e-6)
    assert torch.equal(out["image"][:, 3], rgba[:, 3])
    with pytest.raises(NodeError) as caught:
        call(BlendImages, image1=torch.rand(2, 3, 4, 4), image2=torch.rand(3, 3, 4, 4))
    assert caught.value.input == "image2"


# -- conversion --------------------------------------------------------------------------------
def ui_node(
    node_id: int, type_: str, values: list, inputs: list | None = None, outputs: list | None = None
) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": type_,
        "widgets_values": values,
        "inputs": inputs or [],
        "outputs": outputs or [],
    }


def _textgen_graph(values: list, extra_inputs: list | None = None) -> dict[str, Any]:
    return {
        "nodes": [
            ui_node(
                1,
                "CLIPLoader",
                ["qwen_3_4b.safetensors", "lumina2", "default"],
                outputs=[{"name": "CLIP", "type": "CLIP", "links": [1]}],
            ),
            ui_node(
                2,
                "TextGenerate",
                values,
                inputs=[{"name": "clip", "type": "CLIP", "link": 1}, *(extra_inputs or [])],
                outputs=[
                    {"name": "generated_text", "type": "STRING", "links": [2]},
                    {"name": "thinking", "type": "STRING", "links": []},
                ],
            ),
            ui_node(3, "PreviewAny", [], inputs=[{"name": "source", "type": "*", "link": 2}]),
        ],
        "links": [[1, 1, 0, 2, 0, "CLIP"], [2, 2, 0, 3, 0, "STRING"]],
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (  # Qwen-Image 2.1's: every widget, mtp last
            ["hi", 4096, "on", 1, 20, 0.95, 0, 1, 0, 1.5, True, True, "auto"],
            dict(
                temperature=1,
                top_k=20,
                top_p=0.95,
                min_p=0,
                repetition_penalty=1,
                seed=0,
                presence_penalty=1.5,
                thinking=True,
                use_default_template=True,
            ),
        ),
        (  # an early file: no presence_penalty, thinking or template switch yet
            ["hi", 2048, "on", 0.7, 64, 0.95, 0.05, 1.05, 0],
            dict(
                temperature=0.7, top_k=64, top_p=0.95, min_p=0.05, repetition_penalty=1.05, seed=0
            ),
        ),
        (  # a seed followed by control_after_generate
            ["hi", 16, "on", 0.7, 64, 0.95, 0.05, 1.05, 7, "randomize", 0, False],
            dict(
                temperature=0.7,
                top_k=64,
                top_p=0.95,
                min_p=0.05,
                repetition_penalty=1.05,
                seed=7,
                presence_penalty=0,
                thinking=False,
            ),
        ),
        (  # greedy: no sampling widgets follow
            ["hi", 16, "off", True, False, "off"],
            dict(thinking=True, use_default_template=False),
        ),
    ],
)
def test_text_generate_widgets_follow_the_sampling_mode(values: list, expected: dict) -> None:
    nodes = to_easel(_textgen_graph(values))["nodes"]
    assert nodes["2"]["type"] == "TextGenerate"
    assert nodes["2"]["inputs"] == {
        "clip": ["1", "clip"],
        "prompt": "hi",
        "max_length": values[1],
        "sampling_mode": values[2],
        **expected,
    }


def test_text_generate_linked_seed_and_images_convert_and_extra_images_are_named() -> None:
    graph = _textgen_graph(["hi", 64, "on", 0.7, 64, 0.95, 0.05, 1.05, 0, 0, False, True])
    converted = to_easel(
        {
            "1": {"class_type": "PrimitiveInt", "inputs": {"value": 5}},
            "2": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "3": {
                "class_type": "TextGenerate",
                "inputs": {
                    "clip": ["9", 0],
                    "prompt": "hi",
                    "max_length": 8,
                    "sampling_mode": "on",
                    "sampling_mode.seed": ["1", 0],
                    "sampling_mode.temperature": 0.5,
                    "images.image_0": ["2", 0],
                    "mtp": "auto",
                },
            },
            "9": {
                "class_type": "CLIPLoader",
                "inputs": {"clip_name": "q.safetensors", "type": "lumina2"},
            },
            "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
        }
    )["nodes"]["3"]["inputs"]
    assert converted["seed"] == ["1", "value"] and converted["image"] == ["2", "image"]
    assert converted["temperature"] == 0.5 and "mtp" not in converted
    assert to_easel(graph)["nodes"]["2"]["inputs"]["use_default_template"] is True
    with pytest.raises(WorkflowError) as caught:
        to_easel(
            {
                "2": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
                "3": {
                    "class_type": "TextGenerate",
                    "inputs": {"prompt": "hi", "images.image_1": ["2", 0]},
                },
            }
        )
    assert ("3", "images.image_1") in {(p.node, p.input) for p in caught.value.problems}


def test_utilities_convert_from_the_ui_format() -> None:
    data = {
        "nodes": [
            ui_node(
                1,
                "LoadImage",
                ["a.png", "image"],
                outputs=[
                    {"name": "IMAGE", "type": "IMAGE", "links": [1, 2, 3]},
                    {"name": "MASK", "type": "MASK", "links": [4]},
                ],
            ),
            ui_node(
                2,
                "ImageBlur",
                [31, 1],
                inputs=[{"name": "image", "type": "IMAGE", "link": 1}],
                outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [5]}],
            ),
            ui_node(
                3,
                "ImageBlend",
                [0.5, "screen"],
                inputs=[
                    {"name": "image1", "type": "IMAGE", "link": 2},
                    {"name": "image2", "type": "IMAGE", "link": 5},
                ],
                outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [6]}],
            ),
            ui_node(
                4,
                "GrowMask",
                [20, True],
                inputs=[{"name": "mask", "type": "MASK", "link": 4}],
                outputs=[{"name": "MASK", "type": "MASK", "links": [7]}],
            ),
            ui_node(5, "PreviewImage", [], inputs=[{"name": "images", "type": "IMAGE", "link": 6}]),
            ui_node(6, "MaskPreview", [], inputs=[{"name": "mask", "type": "MASK", "link": 7}]),
            ui_node(
                7,
                "CustomCombo",
                ["16:9", 1, "9:16", "16:9", ""],
                outputs=[
                    {"name": "STRING", "type": "STRING", "links": [8]},
                    {"name": "INDEX", "type": "INT", "links": []},
                ],
            ),
            ui_node(
                8,
                "StringFormat",
                ["{a} at {b}"],
                inputs=[
                    {"name": "values.a", "type": "*", "link": 8},
                    {"name": "values.b", "type": "*", "link": 3},
                ],
                outputs=[{"name": "STRING", "type": "STRING", "links": [9]}],
            ),
            ui_node(
                9,
                "JsonExtractString",
                ["", "prompt"],
                inputs=[
                    {"name": "json_string", "type": "STRING", "link": 9},
                ],
                outputs=[{"name": "STRING", "type": "STRING", "links": [10]}],
            ),
            ui_node(10, "PreviewAny", [], inputs=[{"name": "source", "type": "*", "link": 10}]),
        ],
        "links": [
            [1, 1, 0, 2, 0, "IMAGE"],
            [2, 1, 0, 3, 0, "IMAGE"],
            [3, 1, 0, 8, 1, "IMAGE"],
            [4, 1, 1, 4, 0, "MASK"],
            [5, 2, 0, 3, 1, "IMAGE"],
            [6, 3, 0, 5, 0, "IMAGE"],
            [7, 4, 0, 6, 0, "MASK"],
            [8, 7, 0, 8, 0, "STRING"],
            [9, 8, 0, 9, 0, "STRING"],
            [10, 9, 0, 10, 0, "STRING"],
        ],
    }
    nodes = to_easel(data)["nodes"]
    assert nodes["2"]["type"] == "BlurImage"
    assert nodes["2"]["inputs"] == {"image": ["1", "image"], "blur_radius": 31, "sigma": 1}
    assert nodes["3"]["inputs"] == {
        "image1": ["1", "image"],
        "image2": ["2", "image"],
        "blend_factor": 0.5,
        "blend_mode": "screen",
    }
    assert nodes["4"]["inputs"] == {"mask": ["1", "mask"], "expand": 20, "tapered_corners": True}
    assert nodes["7"]["type"] == "Choice"
    assert nodes["7"]["inputs"] == {"choice": "16:9", "index": 1}
    assert nodes["8"]["type"] == "FormatText"
    assert nodes["8"]["inputs"] == {
        "f_string": "{a} at {b}",
        "a": ["7", "text"],
        "b": ["1", "image"],
    }
    assert nodes["9"]["type"] == "ExtractJsonValue"
    assert nodes["9"]["inputs"] == {"json_string": ["8", "text"], "key": "prompt"}


def test_text_nodes_run_in_a_workflow_and_set_first_sigma_converts() -> None:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins

    workflow = {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {
            "1": {"type": "Float", "inputs": {"value": 2.0}},
            "2": {
                "type": "FormatText",
                "inputs": {"f_string": "sigma {a:.1f}", "a": ["1", "value"]},
            },
            "3": {"type": "ExtractJsonValue", "inputs": {"json_string": '{"k": "v"}', "key": "k"}},
            "4": {
                "type": "ConcatenateText",
                "inputs": {"a": ["2", "text"], "b": ["3", "text"], "delimiter": " / "},
            },
        },
    }
    result = Executor(load_plugins(entry_points=False)).run(
        workflow, targets=["4"], keep_values=True
    )
    assert result.ok, result.failures
    assert result.values["4"]["text"] == "sigma 2.0 / v"
    node = to_easel(
        {
            "1": {
                "class_type": "BasicScheduler",
                "inputs": {"model": ["9", 0], "scheduler": "simple", "steps": 4, "denoise": 1.0},
            },
            "2": {"class_type": "SetFirstSigma", "inputs": {"sigmas": ["1", 0], "sigma": 999.0}},
            "9": {
                "class_type": "UNETLoader",
                "inputs": {"unet_name": "m.safetensors", "weight_dtype": "default"},
            },
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
        }
    )["nodes"]["2"]
    assert node["type"] == "SetFirstSigma"
    assert node["inputs"] == {"sigmas": ["1", "sigmas"], "sigma": 999.0}
