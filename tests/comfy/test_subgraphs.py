"""ComfyUI subgraphs in UI-format files expand into plain Easel nodes, as ComfyUI's frontend
flattens them (ids `<instance>:<inner>`, promoted widgets, nesting, bypass and mute)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from easel.comfy.convert import to_easel
from easel.comfy.mapping import NODE_MAPS
from easel.comfy.subgraphs import flatten_subgraphs
from easel.core.context import Context
from easel.core.graph import WorkflowError, validate
from easel.workflow_edit import set_input

ENCODER = "0b6e1c52-88c9-4bd4-9a0f-3a1bb8f3f0d2"  # CLIPTextEncode wrapped: clip, text -> cond
PROMPTS = "5d1f7a9e-0000-4000-8000-000000000002"  # two encoders, one of them nested
SAMPLE = "7e3c2b1a-0000-4000-8000-000000000003"  # seed -> KSampler, latent passed through


def link(
    link_id: int, origin: int, slot: int, target: int, target_slot: int, kind: str
) -> dict[str, Any]:
    return {
        "id": link_id,
        "origin_id": origin,
        "origin_slot": slot,
        "target_id": target,
        "target_slot": target_slot,
        "type": kind,
    }


def encoder_definition() -> dict[str, Any]:
    return {
        "id": ENCODER,
        "name": "Prompt",
        "version": 1,
        "inputNode": {"id": -10, "bounding": [0, 0, 100, 100]},
        "outputNode": {"id": -20, "bounding": [500, 0, 100, 100]},
        "inputs": [
            {"id": "a", "name": "clip", "type": "CLIP", "linkIds": [1]},
            {"id": "b", "name": "text", "type": "STRING", "linkIds": [2]},
        ],
        "outputs": [{"id": "c", "name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [3]}],
        "widgets": [],
        "nodes": [
            {
                "id": 1,
                "type": "CLIPTextEncode",
                "pos": [200, 40],
                "mode": 0,
                "inputs": [
                    {"name": "clip", "type": "CLIP", "link": 1},
                    {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 2},
                ],
                "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [3]}],
                "widgets_values": ["inner default"],
            }
        ],
        "links": [
            link(1, -10, 0, 1, 0, "CLIP"),
            link(2, -10, 1, 1, 1, "STRING"),
            link(3, 1, 0, -20, 0, "CONDITIONING"),
        ],
    }


def base_graph() -> dict[str, Any]:
    """Checkpoint, an Encoder instance (10) for the positive prompt, a plain negative, a
    sampler, decode and save."""
    nodes = [
        {
            "id": 4,
            "type": "CheckpointLoaderSimple",
            "pos": [0, 0],
            "mode": 0,
            "outputs": [
                {"name": "MODEL", "type": "MODEL", "links": [1]},
                {"name": "CLIP", "type": "CLIP", "links": [2, 3]},
                {"name": "VAE", "type": "VAE", "links": [9]},
            ],
            "widgets_values": ["sd15.safetensors"],
        },
        {
            "id": 10,
            "type": ENCODER,
            "pos": [400, 100],
            "mode": 0,
            "inputs": [
                {"name": "clip", "type": "CLIP", "link": 2},
                {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": None},
            ],
            "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4]}],
            "widgets_values": ["a lighthouse"],
        },
        {
            "id": 7,
            "type": "CLIPTextEncode",
            "pos": [400, 400],
            "mode": 0,
            "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
            "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [5]}],
            "widgets_values": ["blurry"],
        },
        {
            "id": 5,
            "type": "EmptyLatentImage",
            "pos": [400, 600],
            "mode": 0,
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [6]}],
            "widgets_values": [512, 512, 1],
        },
        {
            "id": 3,
            "type": "KSampler",
            "pos": [800, 100],
            "mode": 0,
            "inputs": [
                {"name": "model", "type": "MODEL", "link": 1},
                {"name": "positive", "type": "CONDITIONING", "link": 4},
                {"name": "negative", "type": "CONDITIONING", "link": 5},
                {"name": "latent_image", "type": "LATENT", "link": 6},
            ],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7]}],
            "widgets_values": [42, "fixed", 20, 7, "euler", "normal", 1],
        },
        {
            "id": 8,
            "type": "VAEDecode",
            "pos": [1100, 100],
            "mode": 0,
            "inputs": [
                {"name": "samples", "type": "LATENT", "link": 7},
                {"name": "vae", "type": "VAE", "link": 9},
            ],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [8]}],
        },
        {
            "id": 9,
            "type": "SaveImage",
            "pos": [1400, 100],
            "mode": 0,
            "inputs": [{"name": "images", "type": "IMAGE", "link": 8}],
            "widgets_values": ["out"],
        },
    ]
    links = [
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 4, 1, 10, 0, "CLIP"],
        [3, 4, 1, 7, 0, "CLIP"],
        [4, 10, 0, 3, 1, "CONDITIONING"],
        [5, 7, 0, 3, 2, "CONDITIONING"],
        [6, 5, 0, 3, 3, "LATENT"],
        [7, 3, 0, 8, 0, "LATENT"],
        [8, 8, 0, 9, 0, "IMAGE"],
        [9, 4, 2, 8, 1, "VAE"],
    ]
    return {
        "nodes": nodes,
        "links": links,
        "version": 0.4,
        "definitions": {"subgraphs": [encoder_definition()]},
    }


def node(data: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(n for n in data["nodes"] if n["id"] == node_id)


def test_an_instance_becomes_its_inner_nodes_with_comfyui_execution_ids() -> None:
    nodes = to_easel(base_graph())["nodes"]
    assert "10" not in nodes
    assert nodes["10:1"] == {
        "type": "TextEncode",
        "inputs": {"text": "a lighthouse", "clip": ["4", "clip"]},
    }
    assert nodes["3"]["inputs"]["positive"] == ["10:1", "conditioning"]
    assert nodes["3"]["inputs"]["negative"] == ["7", "conditioning"]


def test_the_inner_widget_value_counts_when_the_instance_stores_none() -> None:
    data = base_graph()
    del node(data, 10)["widgets_values"]
    assert to_easel(data)["nodes"]["10:1"]["inputs"]["text"] == "inner default"


def test_an_outer_link_to_a_promoted_input_wins_over_its_widget() -> None:
    data = base_graph()
    data["nodes"].append(
        {
            "id": 20,
            "type": "PrimitiveStringMultiline",
            "mode": 0,
            "outputs": [{"name": "STRING", "type": "STRING", "links": [20]}],
            "widgets_values": ["from outside"],
        }
    )
    data["links"].append([20, 20, 0, 10, 1, "STRING"])
    node(data, 10)["inputs"][1]["link"] = 20
    nodes = to_easel(data)["nodes"]
    assert nodes["10:1"]["inputs"]["text"] == ["20", "value"]
    assert nodes["20"] == {"type": "String", "inputs": {"value": "from outside"}}


def test_set_addresses_an_inner_node_by_its_execution_id() -> None:
    workflow = to_easel(base_graph())
    set_input(workflow, "10:1.text", "a harbour")
    assert workflow["nodes"]["10:1"]["inputs"]["text"] == "a harbour"


def test_two_instances_of_one_definition_are_two_copies() -> None:
    data = base_graph()
    negative = node(data, 7)
    negative.update(
        type=ENCODER,
        widgets_values=["blurry, dark"],
        inputs=[
            {"name": "clip", "type": "CLIP", "link": 3},
            {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": None},
        ],
    )
    nodes = to_easel(data)["nodes"]
    assert nodes["7:1"]["inputs"]["text"] == "blurry, dark"
    assert nodes["10:1"]["inputs"]["text"] == "a lighthouse"
    assert nodes["3"]["inputs"]["negative"] == ["7:1", "conditioning"]


def nested_graph() -> dict[str, Any]:
    """Instance 30 of PROMPTS: its node 2 is an Encoder instance fed by PROMPTS' `text`
    input, its node 5 a plain negative encoder; both conditionings go out."""
    data = base_graph()
    prompts = {
        "id": PROMPTS,
        "name": "Prompts",
        "version": 1,
        "inputNode": {"id": -10, "bounding": [0, 0, 10, 10]},
        "outputNode": {"id": -20, "bounding": [0, 0, 10, 10]},
        "inputs": [
            {"id": "p", "name": "clip", "type": "CLIP", "linkIds": [11, 12]},
            {"id": "q", "name": "positive_text", "type": "STRING", "linkIds": [13]},
        ],
        "outputs": [
            {"id": "r", "name": "positive", "type": "CONDITIONING", "linkIds": [14]},
            {"id": "s", "name": "negative", "type": "CONDITIONING", "linkIds": [15]},
        ],
        "nodes": [
            {
                "id": 2,
                "type": ENCODER,
                "pos": [0, 0],
                "mode": 0,
                "inputs": [
                    {"name": "clip", "type": "CLIP", "link": 11},
                    {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 13},
                ],
                "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [14]}],
                "widgets_values": ["nested default"],
            },
            {
                "id": 5,
                "type": "CLIPTextEncode",
                "pos": [0, 200],
                "mode": 0,
                "inputs": [{"name": "clip", "type": "CLIP", "link": 12}],
                "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [15]}],
                "widgets_values": ["ugly"],
            },
        ],
        "links": [
            link(11, -10, 0, 2, 0, "CLIP"),
            link(12, -10, 0, 5, 0, "CLIP"),
            link(13, -10, 1, 2, 1, "STRING"),
            link(14, 2, 0, -20, 0, "CONDITIONING"),
            link(15, 5, 0, -20, 1, "CONDITIONING"),
        ],
    }
    data["definitions"]["subgraphs"].append(prompts)
    data["nodes"] = [n for n in data["nodes"] if n["id"] not in (10, 7)]
    data["nodes"].append(
        {
            "id": 30,
            "type": PROMPTS,
            "pos": [400, 100],
            "mode": 0,
            "inputs": [
                {"name": "clip", "type": "CLIP", "link": 2},
                {
                    "name": "positive_text",
                    "type": "STRING",
                    "widget": {"name": "positive_text"},
                    "link": None,
                },
            ],
            "outputs": [
                {"name": "positive", "type": "CONDITIONING", "links": [4]},
                {"name": "negative", "type": "CONDITIONING", "links": [5]},
            ],
            "widgets_values": ["a castle"],
        }
    )
    data["links"] = [lk for lk in data["links"] if lk[0] != 3]
    for entry in data["links"]:
        if entry[0] == 2:
            entry[3:5] = [30, 0]
        if entry[0] == 4:
            entry[1:3] = [30, 0]
        if entry[0] == 5:
            entry[1:3] = [30, 1]
    return data


def test_nested_subgraphs_expand_with_the_path_of_instance_ids() -> None:
    nodes = to_easel(nested_graph())["nodes"]
    assert nodes["30:2:1"] == {
        "type": "TextEncode",
        "inputs": {"text": "a castle", "clip": ["4", "clip"]},
    }
    assert nodes["30:5"]["inputs"] == {"text": "ugly", "clip": ["4", "clip"]}
    assert nodes["3"]["inputs"]["positive"] == ["30:2:1", "conditioning"]
    assert nodes["3"]["inputs"]["negative"] == ["30:5", "conditioning"]


def test_a_nested_promoted_widget_falls_back_to_the_innermost_value() -> None:
    data = nested_graph()
    del node(data, 30)["widgets_values"]
    assert to_easel(data)["nodes"]["30:2:1"]["inputs"]["text"] == "nested default"


def test_a_bypassed_instance_passes_its_input_of_the_matching_type() -> None:
    data = base_graph()
    passthrough = {
        "id": SAMPLE,
        "name": "Hires pass",
        "inputs": [{"id": "l", "name": "latent", "type": "LATENT", "linkIds": [1]}],
        "outputs": [{"id": "m", "name": "LATENT", "type": "LATENT", "linkIds": [2]}],
        "nodes": [
            {
                "id": 1,
                "type": "LatentUpscaleBy",
                "mode": 0,
                "inputs": [{"name": "samples", "type": "LATENT", "link": 1}],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2]}],
                "widgets_values": ["bislerp", 1.5],
            }
        ],
        "links": [link(1, -10, 0, 1, 0, "LATENT"), link(2, 1, 0, -20, 0, "LATENT")],
    }
    data["definitions"]["subgraphs"].append(passthrough)
    data["nodes"].append(
        {
            "id": 40,
            "type": SAMPLE,
            "mode": 4,
            "inputs": [{"name": "latent", "type": "LATENT", "link": 7}],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [40]}],
        }
    )
    data["links"] = [lk for lk in data["links"] if lk[0] != 7]
    data["links"] += [[7, 3, 0, 40, 0, "LATENT"], [40, 40, 0, 8, 0, "LATENT"]]
    node(data, 8)["inputs"][0]["link"] = 40
    nodes = to_easel(data)["nodes"]
    # Its inner LatentUpscaleBy (whose "bislerp" would not convert) never runs.
    assert not any(node_id.startswith("40") for node_id in nodes)
    assert nodes["8"]["inputs"]["latent"] == ["3", "latent"]
    # Unbypassed, it expands (and its method is reported).
    node(data, 40)["mode"] = 0
    with pytest.raises(WorkflowError) as caught:
        to_easel(data)
    assert [(p.node, p.input) for p in caught.value.problems] == [("40:1", "upscale_method")]


def test_a_muted_instance_drops_what_needs_it() -> None:
    data = base_graph()
    node(data, 10)["mode"] = 2
    with pytest.raises(WorkflowError, match="nothing to run") as caught:
        to_easel(data)
    assert "muted: 10" in str(caught.value)


def test_an_output_wired_straight_to_an_input_passes_the_outer_source() -> None:
    data = base_graph()
    definition = data["definitions"]["subgraphs"][0]
    definition["outputs"].append({"id": "x", "name": "clip", "type": "CLIP", "linkIds": [9]})
    definition["links"].append(link(9, -10, 0, -20, 1, "CLIP"))
    node(data, 10)["outputs"].append({"name": "clip", "type": "CLIP", "links": [30]})
    node(data, 7)["inputs"][0]["link"] = 30
    data["links"] = [lk for lk in data["links"] if lk[0] != 3] + [[30, 10, 1, 7, 0, "CLIP"]]
    assert to_easel(data)["nodes"]["7"]["inputs"]["clip"] == ["4", "clip"]


def test_a_control_after_generate_entry_is_skipped_among_promoted_values() -> None:
    data = base_graph()
    seeded = {
        "id": SAMPLE,
        "name": "Sampler",
        "inputs": [
            {"id": "s", "name": "seed", "type": "INT", "linkIds": [1]},
            {"id": "t", "name": "steps", "type": "INT", "linkIds": [2]},
            {"id": "u", "name": "model", "type": "MODEL", "linkIds": [3]},
            {"id": "v", "name": "positive", "type": "CONDITIONING", "linkIds": [4]},
            {"id": "w", "name": "negative", "type": "CONDITIONING", "linkIds": [5]},
            {"id": "x", "name": "latent", "type": "LATENT", "linkIds": [6]},
        ],
        "outputs": [{"id": "y", "name": "LATENT", "type": "LATENT", "linkIds": [7]}],
        "nodes": [
            {
                "id": 3,
                "type": "KSampler",
                "mode": 0,
                "inputs": [
                    {"name": "model", "type": "MODEL", "link": 3},
                    {"name": "positive", "type": "CONDITIONING", "link": 4},
                    {"name": "negative", "type": "CONDITIONING", "link": 5},
                    {"name": "latent_image", "type": "LATENT", "link": 6},
                    {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 1},
                    {"name": "steps", "type": "INT", "widget": {"name": "steps"}, "link": 2},
                ],
                "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7]}],
                "widgets_values": [1, "fixed", 30, 7, "euler", "normal", 1],
            }
        ],
        "links": [
            link(1, -10, 0, 3, 4, "INT"),
            link(2, -10, 1, 3, 5, "INT"),
            link(3, -10, 2, 3, 0, "MODEL"),
            link(4, -10, 3, 3, 1, "CONDITIONING"),
            link(5, -10, 4, 3, 2, "CONDITIONING"),
            link(6, -10, 5, 3, 3, "LATENT"),
            link(7, 3, 0, -20, 0, "LATENT"),
        ],
    }
    data["definitions"]["subgraphs"].append(seeded)
    sampler = node(data, 3)
    sampler["type"] = SAMPLE
    sampler["inputs"] = [
        {"name": "model", "type": "MODEL", "link": 1},
        {"name": "positive", "type": "CONDITIONING", "link": 4},
        {"name": "negative", "type": "CONDITIONING", "link": 5},
        {"name": "latent", "type": "LATENT", "link": 6},
    ]
    sampler["widgets_values"] = [1234, "randomize", 8]
    nodes = to_easel(data)["nodes"]
    inputs = nodes["3:3"]["inputs"]
    assert (inputs["seed"], inputs["steps"], inputs["cfg"]) == (1234, 8, 7)
    assert inputs["model"] == ["4", "model"] and inputs["latent"] == ["5", "latent"]
    assert nodes["8"]["inputs"]["latent"] == ["3:3", "latent"]


def test_a_subgraph_that_contains_itself_is_reported() -> None:
    data = base_graph()
    definition = data["definitions"]["subgraphs"][0]
    definition["nodes"].append({"id": 9, "type": ENCODER, "mode": 0, "inputs": [], "outputs": []})
    with pytest.raises(WorkflowError, match="contains itself") as caught:
        to_easel(data)
    assert [p.node for p in caught.value.problems] == ["10:9"]


def test_expanded_graphs_validate_against_the_registry(registry, tiny_env, tmp_path) -> None:
    workflow = to_easel(nested_graph())
    choices = registry.get("CheckpointLoader").inputs["name"].current_choices()
    assert choices
    workflow["nodes"]["4"]["inputs"]["name"] = choices[0]
    plan = validate(workflow, registry, context=Context(services={"input_dir": tmp_path}))
    assert plan.targets == ["9"]


def test_files_without_subgraphs_are_left_as_they_are() -> None:
    data = base_graph()
    del data["definitions"]
    data["nodes"] = [n for n in data["nodes"] if n["id"] != 10]
    flat, problems = flatten_subgraphs(data, NODE_MAPS)
    assert flat is data and problems == []


TEMPLATES = "comfyui_workflow_templates_json"


@pytest.mark.skipif(
    importlib.util.find_spec(TEMPLATES) is None,
    reason="the templates package is a dev extra (installed in CI)",
)
def test_a_real_template_flattens_with_promoted_widget_values() -> None:
    spec = importlib.util.find_spec(TEMPLATES)
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "templates" / "image_z_image_turbo.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    flat, problems = flatten_subgraphs(copy.deepcopy(data), NODE_MAPS)
    assert problems == []
    [instance] = [
        n for n in data["nodes"] if n["type"] in {s["id"] for s in data["definitions"]["subgraphs"]}
    ]
    ids = {str(n["id"]) for n in flat["nodes"]}
    inner = data["definitions"]["subgraphs"][0]["nodes"]
    assert {f"{instance['id']}:{n['id']}" for n in inner} <= ids
    assert str(instance["id"]) not in ids


def test_a_primitive_node_outside_feeds_a_promoted_input() -> None:
    data = base_graph()
    data["nodes"].append(
        {
            "id": 21,
            "type": "PrimitiveNode",
            "mode": 0,
            "outputs": [
                {"name": "STRING", "type": "STRING", "links": [21], "widget": {"name": "text"}}
            ],
            "widgets_values": ["from a primitive"],
        }
    )
    data["links"].append([21, 21, 0, 10, 1, "STRING"])
    node(data, 10)["inputs"][1]["link"] = 21
    assert to_easel(data)["nodes"]["10:1"]["inputs"]["text"] == "from a primitive"


def test_api_prompts_with_execution_ids_convert_as_they_are() -> None:
    """ComfyUI's frontend queues subgraph nodes under the same ids ("10:1")."""
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "10:1": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a"}},
        "3": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["10:1", 0]}},
    }
    nodes = to_easel(prompt)["nodes"]
    assert nodes["10:1"]["inputs"] == {"clip": ["4", "clip"], "text": "a"}
    assert nodes["3"]["inputs"] == {"conditioning": ["10:1", "conditioning"]}


def test_subgraphs_that_multiply_stop_with_a_problem() -> None:
    """Ten instances of a subgraph of ten instances of ... would be 10**9 nodes."""
    data = base_graph()
    definitions = data["definitions"]["subgraphs"]
    previous = ENCODER
    for level in range(9):
        sub_id = f"00000000-0000-4000-8000-{level:012d}"
        definitions.append(
            {
                "id": sub_id,
                "name": f"level {level}",
                "inputs": [],
                "outputs": [],
                "links": [],
                "nodes": [
                    {"id": i, "type": previous, "mode": 0, "inputs": [], "outputs": []}
                    for i in range(1, 11)
                ],
            }
        )
        previous = sub_id
    data["nodes"].append({"id": 50, "type": previous, "mode": 0, "inputs": [], "outputs": []})
    with pytest.raises(WorkflowError, match="more than 20,000 nodes"):
        to_easel(data)
