"""The utility nodes of ComfyUI's templates convert (API and UI format) and run in Easel."""

from __future__ import annotations

from typing import Any

import pytest

from easel.comfy.convert import to_easel
from easel.core.executor import Executor
from easel.core.graph import WorkflowError
from easel.core.plugins import load_plugins


def api(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def converted(prompt: dict[str, Any]) -> dict[str, Any]:
    return to_easel(prompt)["nodes"]


def run(workflow: dict[str, Any], targets: list[str]) -> Any:
    result = Executor(load_plugins(entry_points=False)).run(
        workflow, targets=targets, keep_values=True
    )
    assert result.ok, result.failures
    return result


def test_primitives_math_switch_and_text_convert_and_run() -> None:
    workflow = to_easel(
        {
            "1": api("PrimitiveInt", value=1280, control_after_generate="fixed"),
            "2": api("PrimitiveFloat", value=2.5),
            "3": api("PrimitiveBoolean", value=True),
            "4": api(
                "ComfyMathExpression",
                expression="a / b if b > 0 else 0",
                **{"values.a": ["1", 0], "values.b": ["2", 0]},
            ),
            "5": api("ComfySwitchNode", switch=["3", 0], on_true=["4", 1], on_false=["4", 0]),
            "6": api("PrimitiveStringMultiline", value="width"),
            "7": api("StringConcatenate", string_a=["6", 0], string_b="is", delimiter=" "),
            "8": api("StringReplace", string=["7", 0], find="is", replace="equals"),
            "9": api(
                "RegexReplace",
                string=["8", 0],
                regex_pattern="^W",
                replace="w",
                case_insensitive=False,
                multiline=False,
                dotall=False,
                count=0,
            ),
            "10": api("PreviewAny", source=["5", 0]),
            "11": api("PreviewAny", source=["9", 0]),
        }
    )
    nodes = workflow["nodes"]
    assert nodes["4"] == {
        "type": "MathExpression",
        "inputs": {"expression": "a / b if b > 0 else 0", "a": ["1", "value"], "b": ["2", "value"]},
    }
    assert nodes["5"]["inputs"] == {
        "switch": ["3", "value"],
        "on_true": ["4", "int"],
        "on_false": ["4", "float"],
    }
    assert nodes["7"] == {
        "type": "ConcatenateText",
        "inputs": {"a": ["6", "value"], "b": "is", "delimiter": " "},
    }
    assert nodes["9"]["inputs"]["regex_pattern"] == "^W"
    result = run(workflow, ["10", "11"])
    assert result.ui["10"] == {"text": ["512"]}  # int(1280 / 2.5), the switch's true branch
    assert result.ui["11"] == {"text": ["width equals"]}


def test_image_nodes_convert_with_their_inputs() -> None:
    nodes = converted(
        {
            "1": api("LoadImage", image="a.png"),
            "2": api("GetImageSize", image=["1", 0]),
            "3": api(
                "ImageScaleToTotalPixels",
                image=["1", 0],
                upscale_method="nearest-exact",
                megapixels=1.0,
                resolution_steps=16,
            ),
            "4": api(
                "ImageStitch",
                image1=["3", 0],
                image2=["1", 0],
                direction="down",
                match_image_size=True,
                spacing_width=0,
                spacing_color="white",
            ),
            "5": api("Canny", image=["4", 0], low_threshold=0.1, high_threshold=0.6),
            "6": api("BatchImagesNode", **{"images.image0": ["5", 0], "images.image1": ["1", 0]}),
            "7": api(
                "ResizeImageMaskNode",
                input=["6", 0],
                resize_type="scale longer dimension",
                **{"resize_type.longer_size": ["2", 0]},
                scale_method="nearest-exact",
            ),
            "8": api("SaveImage", images=["7", 0], filename_prefix="x"),
        }
    )
    assert nodes["2"] == {"type": "ImageSize", "inputs": {"image": ["1", "image"]}}
    assert nodes["3"]["inputs"] == {
        "image": ["1", "image"],
        "method": "nearest",
        "megapixels": 1.0,
        "resolution_steps": 16,
    }
    assert nodes["4"]["type"] == "ImageStitch" and nodes["4"]["inputs"]["image2"] == ["1", "image"]
    assert nodes["5"]["inputs"] == {
        "image": ["4", "image"],
        "low_threshold": 0.1,
        "high_threshold": 0.6,
    }
    assert nodes["6"]["inputs"] == {"image0": ["5", "image"], "image1": ["1", "image"]}
    assert nodes["7"] == {
        "type": "ResizeImageMask",
        "inputs": {
            "input": ["6", "image"],
            "resize_type": "scale longer dimension",
            "longer_size": ["2", "width"],
            "scale_method": "nearest",
        },
    }
    assert nodes["8"]["inputs"]["image"] == ["7", "resized"]


def ui_node(
    node_id: int,
    kind: str,
    values: list[Any],
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": kind,
        "mode": 0,
        "inputs": inputs or [],
        "outputs": outputs or [],
        "widgets_values": values,
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            ["scale longer dimension", 1024, "lanczos"],
            {
                "resize_type": "scale longer dimension",
                "longer_size": 1024,
                "scale_method": "lanczos",
            },
        ),
        (
            ["scale by multiplier", 2, "nearest-exact"],
            {"resize_type": "scale by multiplier", "multiplier": 2, "scale_method": "nearest"},
        ),
        (
            ["scale dimensions", 512, 0, "center", "area"],
            {
                "resize_type": "scale dimensions",
                "width": 512,
                "height": 0,
                "crop": "center",
                "scale_method": "area",
            },
        ),
        (
            ["match size", "disabled", "bilinear"],
            {"resize_type": "match size", "crop": "disabled", "scale_method": "bilinear"},
        ),
    ],
)
def test_resize_image_mask_widgets_follow_the_chosen_resize_type(values, expected) -> None:
    data = {
        "nodes": [
            ui_node(
                1,
                "LoadImage",
                ["a.png", "image"],
                outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
            ),
            ui_node(
                2,
                "ResizeImageMaskNode",
                values,
                inputs=[{"name": "input", "type": "IMAGE,MASK", "link": 1}],
                outputs=[{"name": "resized", "type": "IMAGE", "links": [2]}],
            ),
            ui_node(3, "PreviewImage", [], inputs=[{"name": "images", "type": "IMAGE", "link": 2}]),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    }
    nodes = to_easel(data)["nodes"]
    assert nodes["2"]["inputs"] == {"input": ["1", "image"], **expected}


def test_unknown_resize_types_and_methods_are_reported() -> None:
    with pytest.raises(WorkflowError) as caught:
        to_easel(
            {
                "1": api("LoadImage", image="a.png"),
                "2": api(
                    "ResizeImageMaskNode",
                    input=["1", 0],
                    resize_type="stretch",
                    scale_method="area",
                ),
                "3": api(
                    "ResizeImageMaskNode",
                    input=["1", 0],
                    resize_type="scale width",
                    **{"resize_type.width": 64},
                    scale_method="bislerp",
                ),
            }
        )
    assert {(p.node, p.input) for p in caught.value.problems} == {
        ("2", "resize_type"),
        ("3", "scale_method"),
    }


def test_ui_widgets_of_the_utilities() -> None:
    data = {
        "nodes": [
            ui_node(
                1,
                "PrimitiveBoolean",
                [True],
                outputs=[{"name": "BOOLEAN", "type": "BOOLEAN", "links": [1]}],
            ),
            ui_node(
                2,
                "PrimitiveStringMultiline",
                ["a red fox"],
                outputs=[{"name": "STRING", "type": "STRING", "links": [2, 3]}],
            ),
            ui_node(
                3,
                "StringConcatenate",
                ["", "watercolour", ", "],
                inputs=[
                    {
                        "name": "string_a",
                        "type": "STRING",
                        "widget": {"name": "string_a"},
                        "link": 2,
                    }
                ],
                outputs=[{"name": "STRING", "type": "STRING", "links": [4]}],
            ),
            ui_node(
                4,
                "ComfySwitchNode",
                [False],
                inputs=[
                    {"name": "on_false", "type": "*", "link": 3},
                    {"name": "on_true", "type": "*", "link": 4},
                    {"name": "switch", "type": "BOOLEAN", "widget": {"name": "switch"}, "link": 1},
                ],
                outputs=[{"name": "output", "type": "STRING", "links": [5]}],
            ),
            ui_node(
                5,
                "RegexReplace",
                ["", "fox", "cat", True, False, False, 0],
                inputs=[
                    {"name": "string", "type": "STRING", "widget": {"name": "string"}, "link": 5}
                ],
                outputs=[{"name": "STRING", "type": "STRING", "links": [6]}],
            ),
            ui_node(
                6,
                "PreviewAny",
                [None, None, None],
                inputs=[{"name": "source", "type": "*", "link": 6}],
            ),
            ui_node(7, "ImageStitch", ["right", True, 8, "white"]),
            ui_node(8, "Canny", [0.1, 0.6]),
            ui_node(9, "ImageScaleToTotalPixels", ["lanczos", 1, 16]),
            ui_node(10, "GetImageSize", ["width: 1365, height: 768\n batch size: 1"]),
        ],
        "links": [
            [1, 1, 0, 4, 2, "BOOLEAN"],
            [2, 2, 0, 3, 0, "STRING"],
            [3, 2, 0, 4, 0, "STRING"],
            [4, 3, 0, 4, 1, "STRING"],
            [5, 4, 0, 5, 0, "*"],
            [6, 5, 0, 6, 0, "STRING"],
        ],
    }
    workflow = to_easel(data)
    nodes = workflow["nodes"]
    assert nodes["1"] == {"type": "Boolean", "inputs": {"value": True}}
    assert nodes["3"]["inputs"] == {"a": ["2", "value"], "b": "watercolour", "delimiter": ", "}
    assert nodes["4"]["inputs"] == {
        "switch": ["1", "value"],
        "on_false": ["2", "value"],
        "on_true": ["3", "text"],
    }
    assert nodes["5"]["inputs"] == {
        "string": ["4", "output"],
        "regex_pattern": "fox",
        "replace": "cat",
        "case_insensitive": True,
        "multiline": False,
        "dotall": False,
        "count": 0,
    }
    assert nodes["6"] == {"type": "PreviewAsText", "inputs": {"source": ["5", "text"]}}
    assert nodes["7"]["inputs"] == {
        "direction": "right",
        "match_image_size": True,
        "spacing_width": 8,
        "spacing_color": "white",
    }
    assert nodes["8"]["inputs"] == {"low_threshold": 0.1, "high_threshold": 0.6}
    assert nodes["9"]["inputs"] == {"method": "lanczos", "megapixels": 1, "resolution_steps": 16}
    assert nodes["10"] == {"type": "ImageSize", "inputs": {}}  # the progress text is dropped
    for node_id in ("7", "8", "9", "10"):
        del nodes[node_id]
    result = run(workflow, ["6"])
    assert result.ui["6"] == {"text": ["a red cat, watercolour"]}
    assert "2" in result.executed and "3" in result.executed


def test_lora_loader_model_only_maps_to_easels() -> None:
    nodes = converted(
        {
            "1": api("CheckpointLoaderSimple", ckpt_name="m.safetensors"),
            "2": api(
                "LoraLoaderModelOnly",
                model=["1", 0],
                lora_name="style/x.safetensors",
                strength_model=0.8,
            ),
        }
    )
    assert nodes["2"] == {
        "type": "LoraLoaderModelOnly",
        "inputs": {"model": ["1", "model"], "name": "style/x.safetensors", "strength_model": 0.8},
    }


def test_save_image_advanced_resolution_selector_and_image_compare() -> None:
    data = {
        "nodes": [
            ui_node(
                1,
                "ResolutionSelector",
                ["16:9 (Widescreen)", 0.4, 32],
                outputs=[
                    {"name": "width", "type": "INT", "links": [1]},
                    {"name": "height", "type": "INT", "links": [2]},
                ],
            ),
            ui_node(
                2,
                "EmptyLatentImage",
                [512, 512, 1],
                inputs=[
                    {"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 1},
                    {"name": "height", "type": "INT", "widget": {"name": "height"}, "link": 2},
                ],
            ),
            ui_node(
                3,
                "LoadImage",
                ["a.png", "image"],
                outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [3, 4, 5]}],
            ),
            ui_node(
                4,
                "SaveImageAdvanced",
                ["Qwen_image_2.1", "png", "8-bit", "sRGB"],
                inputs=[{"name": "images", "type": "IMAGE", "link": 3}],
            ),
            ui_node(
                5,
                "ImageCompare",
                [],
                inputs=[
                    {"name": "image_a", "type": "IMAGE", "link": 4},
                    {"name": "image_b", "type": "IMAGE", "link": 5},
                ],
            ),
            ui_node(6, "ResolutionSelector", ["1:1 (Square)", 2]),  # before `multiple` existed
        ],
        "links": [
            [1, 1, 0, 2, 0, "INT"],
            [2, 1, 1, 2, 1, "INT"],
            [3, 3, 0, 4, 0, "IMAGE"],
            [4, 3, 0, 5, 0, "IMAGE"],
            [5, 3, 0, 5, 1, "IMAGE"],
        ],
    }
    nodes = to_easel(data)["nodes"]
    assert nodes["1"] == {
        "type": "ResolutionSelector",
        "inputs": {"aspect_ratio": "16:9 (Widescreen)", "megapixels": 0.4, "multiple": 32},
    }
    assert nodes["2"]["inputs"] == {
        "width": ["1", "width"],
        "height": ["1", "height"],
        "batch_size": 1,
    }
    assert nodes["4"] == {
        "type": "SaveImage",
        "inputs": {"image": ["3", "image"], "filename_prefix": "Qwen_image_2.1"},
    }
    assert nodes["5"] == {
        "type": "CompareImages",
        "inputs": {"image_a": ["3", "image"], "image_b": ["3", "image"]},
    }
    assert nodes["6"]["inputs"] == {"aspect_ratio": "1:1 (Square)", "megapixels": 2}
    api_nodes = converted(
        {
            "1": api("LoadImage", image="a.png"),
            "2": api(
                "SaveImageAdvanced",
                images=["1", 0],
                filename_prefix="x",
                format="png",
                **{"format.bit_depth": "8-bit", "format.input_color_space": "sRGB"},
            ),
        }
    )
    assert api_nodes["2"] == {
        "type": "SaveImage",
        "inputs": {"image": ["1", "image"], "filename_prefix": "x"},
    }


def test_save_image_advanced_in_other_formats_is_reported() -> None:
    with pytest.raises(WorkflowError) as caught:
        to_easel(
            {
                "1": api("LoadImage", image="a.png"),
                "2": api(
                    "SaveImageAdvanced",
                    images=["1", 0],
                    filename_prefix="x",
                    format="exr",
                    **{"format.bit_depth": "32-bit float", "format.input_color_space": "linear"},
                ),
            }
        )
    assert {(p.node, p.input) for p in caught.value.problems} == {
        ("2", "format"),
        ("2", "bit_depth"),
        ("2", "input_color_space"),
    }


def test_mask_text_and_max_dimension_nodes_convert_and_run(tmp_path) -> None:
    from PIL import Image as PILImage

    (tmp_path / "in").mkdir()
    PILImage.new("RGBA", (40, 20), (200, 100, 50, 255)).save(tmp_path / "in" / "a.png")
    workflow = to_easel(
        {
            "1": api("LoadImage", image="a.png"),
            "2": api(
                "ImageScaleToMaxDimension", image=["1", 0], upscale_method="area", largest_size=20
            ),
            "3": api("ImageInvert", image=["2", 0]),
            "4": api("ImageToMask", image=["3", 0], channel="red"),
            "5": api("InvertMask", mask=["4", 0]),
            "6": api("MaskToImage", mask=["5", 0]),
            "7": api("JoinImageWithAlpha", image=["6", 0], alpha=["4", 0]),
            "8": api("MaskPreview", mask=["5", 0]),
            "9": api(
                "RegexExtract",
                string="size: 20x10",
                regex_pattern="(\\d+)x(\\d+)",
                mode="First Group",
                case_insensitive=True,
                multiline=False,
                dotall=False,
                group_index=2,
            ),
            "10": api("StringLength", string=["9", 0]),
            "11": api("PreviewAny", source=["10", 0]),
            "12": api("GetImageSize", image=["7", 0]),
            "13": api("PreviewAny", source=["12", 0]),
        }
    )
    nodes = workflow["nodes"]
    assert nodes["2"] == {
        "type": "ResizeImageMask",
        "inputs": {
            "input": ["1", "image"],
            "scale_method": "area",
            "longer_size": 20,
            "resize_type": "scale longer dimension",
        },
    }
    assert [nodes[i]["type"] for i in ("3", "4", "5", "6", "7", "8", "9", "10")] == [
        "InvertImage",
        "ImageToMask",
        "InvertMask",
        "MaskToImage",
        "JoinImageWithAlpha",
        "PreviewMask",
        "RegexExtract",
        "TextLength",
    ]
    result = Executor(
        load_plugins(entry_points=False), services={"input_dir": tmp_path / "in"}
    ).run(workflow, keep_values=True, output_dir=tmp_path / "out")
    assert result.ok, result.failures
    joined = result.values["7"]["image"]
    assert tuple(joined.shape) == (1, 4, 10, 20)
    # red 200 inverted is 55/255; the mask inverts it back, the alpha is 1 - mask.
    assert abs(float(joined[0, 0, 0, 0]) - 200 / 255) < 1e-5
    assert abs(float(joined[0, 3, 0, 0]) - 200 / 255) < 1e-5
    assert result.ui["11"] == {"text": ["2"]}  # len("10")
    assert result.ui["13"] == {"text": ["20"]}  # the width
    assert len(result.ui["8"]["files"]) == 1


def test_nodes_named_as_in_comfyui_take_comfyuis_inputs_over_the_protocol() -> None:
    """Easel nodes with ComfyUI's own names keep ComfyUI's input names, so a prompt queued by
    ComfyUI's frontend or a ComfyUI client runs them as they are."""
    from easel.server.comfy_schema import is_native, object_info, prompt_to_workflow

    registry = load_plugins(entry_points=False)
    prompt = {
        "1": api("LoadImage", image="a.png"),
        "2": api("Canny", image=["1", 0], low_threshold=0.2, high_threshold=0.5),
        "3": api(
            "ImageStitch",
            image1=["2", 0],
            image2=["1", 0],
            direction="down",
            match_image_size=True,
            spacing_width=0,
            spacing_color="white",
        ),
        "4": api(
            "RegexReplace",
            string="a fox",
            regex_pattern="fox",
            replace="cat",
            case_insensitive=True,
            multiline=False,
            dotall=False,
            count=0,
        ),
        "5": api(
            "RegexExtract",
            string=["4", 0],
            regex_pattern="c(a)t",
            mode="First Group",
            case_insensitive=True,
            multiline=False,
            dotall=False,
            group_index=1,
        ),
        "6": api("ImageToMask", image=["3", 0], channel="red"),
        "7": api("JoinImageWithAlpha", image=["1", 0], alpha=["6", 0]),
        "8": api("ResolutionSelector", aspect_ratio="1:1 (Square)", megapixels=1.0, multiple=8),
    }
    for node_id in ("2", "3", "4", "5", "6", "7", "8"):
        assert is_native(prompt[node_id], registry), node_id
    assert prompt_to_workflow(prompt, registry)["nodes"] == to_easel(prompt)["nodes"]
    info = object_info(registry)
    assert list(info["RegexReplace"]["input"]["required"])[:2] == ["string", "regex_pattern"]
    assert info["ComfyMathExpression"]["output"] == ["FLOAT", "INT", "BOOLEAN"]


def test_number_convert_converts_and_runs() -> None:
    workflow = to_easel(
        {
            "1": api("PrimitiveString", value=" 12.5 "),
            "2": api("ComfyNumberConvert", value=["1", 0]),
            "3": api(
                "ComfyMathExpression",
                expression="a * b",
                **{"values.a": ["2", 0], "values.b": ["2", 1]},
            ),
            "4": api("PreviewAny", source=["3", 0]),
        }
    )
    assert workflow["nodes"]["2"] == {"type": "ConvertNumber", "inputs": {"value": ["1", "value"]}}
    assert run(workflow, ["4"]).ui["4"] == {"text": ["150.0"]}


def test_compositing_nodes_keep_comfyuis_names_and_widgets() -> None:
    data = {
        "nodes": [
            ui_node(
                1,
                "LoadImage",
                ["a.png", "image"],
                outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1, 2]}],
            ),
            ui_node(
                2,
                "ImagePadForOutpaint",
                [400, 0, 400, 400, 24],
                inputs=[{"name": "image", "type": "IMAGE", "link": 1}],
                outputs=[
                    {"name": "IMAGE", "type": "IMAGE", "links": [3]},
                    {"name": "MASK", "type": "MASK", "links": [4]},
                ],
            ),
            ui_node(
                3,
                "EmptyImage",
                [64, 32, 1, 16711680],
                outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [5]}],
            ),
            ui_node(
                4,
                "ImageCompositeMasked",
                [0, 0, False],
                inputs=[
                    {"name": "destination", "type": "IMAGE", "link": 3},
                    {"name": "source", "type": "IMAGE", "link": 5},
                    {"name": "mask", "type": "MASK", "link": 4},
                ],
                outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [6]}],
            ),
            ui_node(5, "PreviewImage", [], inputs=[{"name": "images", "type": "IMAGE", "link": 6}]),
            ui_node(6, "MaskComposite", [256, 128, "xor"]),
            ui_node(7, "FeatherMask", [40, 0, 40, 0]),
            ui_node(8, "SolidMask", [0.5, 512, 256]),
            ui_node(9, "ThresholdMask", [0.41]),
        ],
        "links": [
            [1, 1, 0, 2, 0, "IMAGE"],
            [2, 1, 0, 9, 0, "IMAGE"],
            [3, 2, 0, 4, 0, "IMAGE"],
            [4, 2, 1, 4, 2, "MASK"],
            [5, 3, 0, 4, 1, "IMAGE"],
            [6, 4, 0, 5, 0, "IMAGE"],
        ],
    }
    nodes = to_easel(data)["nodes"]
    assert nodes["2"] == {
        "type": "ImagePadForOutpaint",
        "inputs": {
            "left": 400,
            "top": 0,
            "right": 400,
            "bottom": 400,
            "feathering": 24,
            "image": ["1", "image"],
        },
    }
    assert nodes["3"]["inputs"] == {"width": 64, "height": 32, "batch_size": 1, "color": 16711680}
    assert nodes["4"]["inputs"] == {
        "x": 0,
        "y": 0,
        "resize_source": False,
        "destination": ["2", "image"],
        "source": ["3", "image"],
        "mask": ["2", "mask"],
    }
    assert nodes["6"]["inputs"] == {"x": 256, "y": 128, "operation": "xor"}
    assert nodes["7"]["inputs"] == {"left": 40, "top": 0, "right": 40, "bottom": 0}
    assert nodes["8"]["inputs"] == {"value": 0.5, "width": 512, "height": 256}
    assert nodes["9"]["inputs"] == {"value": 0.41}


def test_image_from_batch_converts_and_runs() -> None:
    workflow = to_easel(
        {
            "1": api("EmptyImage", width=8, height=4, batch_size=3, color=0),
            "2": api("ImageFromBatch", image=["1", 0], batch_index=1, length=2),
            "3": api("GetImageSize", image=["2", 0]),
            "4": api("PreviewAny", source=["3", 2]),
        }
    )
    assert workflow["nodes"]["2"] == {
        "type": "ImageFromBatch",
        "inputs": {"image": ["1", "image"], "index": 1, "length": 2},
    }
    assert run(workflow, ["4"]).ui["4"] == {"text": ["2"]}


def test_flux_kontext_image_scale_converts() -> None:
    nodes = converted(
        {
            "1": api("LoadImage", image="a.png"),
            "2": api("FluxKontextImageScale", image=["1", 0]),
            "3": api("PreviewImage", images=["2", 0]),
        }
    )
    assert nodes["2"] == {"type": "FluxKontextImageScale", "inputs": {"image": ["1", "image"]}}
    assert nodes["3"]["inputs"] == {"image": ["2", "image"]}


def test_literals_on_any_typed_inputs_arrive_through_constant_nodes() -> None:
    """A subgraph's promoted widget reaches a Switch or PreviewAny as a literal, which ComfyUI
    accepts; Easel's any-typed inputs take only links, so the converter adds a constant node."""
    workflow = to_easel(
        {
            "1": api("PrimitiveBoolean", value=False),
            "2": api("ComfySwitchNode", switch=["1", 0], on_true="yes", on_false=7),
            "3": api("PreviewAny", source=["2", 0]),
            "4": api("PreviewAny", source=2.5),
            "5": api("StringFormat", f_string="{a}-{b}", **{"values.a": True, "values.b": "x"}),
            "6": api("PreviewAny", source=["5", 0]),
        }
    )
    nodes = workflow["nodes"]
    assert nodes["2"]["inputs"]["on_false"] == ["2:on_false", "value"]
    assert nodes["2:on_false"] == {"type": "Int", "inputs": {"value": 7}}
    assert nodes["2:on_true"] == {"type": "String", "inputs": {"value": "yes"}}
    assert nodes["4:source"] == {"type": "Float", "inputs": {"value": 2.5}}
    assert nodes["5:a"] == {"type": "Boolean", "inputs": {"value": True}}
    result = run(workflow, ["3", "4", "6"])
    assert result.ui["3"] == {"text": ["7"]}
    assert result.ui["4"] == {"text": ["2.5"]}
    assert result.ui["6"] == {"text": ["True-x"]}


def test_every_any_typed_input_of_a_mapped_node_is_declared() -> None:
    """The converter knows which Easel inputs are any-typed from the mapping table: it must
    agree with the registry (a constant node is added only where one is declared)."""
    from easel.comfy.mapping import NODE_MAPS
    from easel.core.types import ANY

    registry = load_plugins(entry_points=False)
    # Inputs that carry images, audio or boxes: no literal can stand for them.
    media = {
        ("ResizeImageMask", "input"),
        ("ResizeImageMask", "match"),
        ("TextGenerate", "audio"),
        ("Flux3LayoutPrompt", "element"),
    }
    for comfy_type, spec in NODE_MAPS.items():
        node_type = registry.nodes.get(spec.easel_type)
        if node_type is None:
            continue
        any_typed = {
            name
            for name, item in node_type.inputs.items()
            if item.type == ANY and (spec.easel_type, name) not in media
        }
        mapped = any_typed & set(spec.inputs.values())
        assert mapped <= spec.any_inputs, (comfy_type, mapped - spec.any_inputs)
        assert spec.any_inputs <= set(node_type.inputs), comfy_type
