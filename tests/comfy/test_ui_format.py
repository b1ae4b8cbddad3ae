"""The converter on UI-format (editor) files written from ComfyUI's documented format."""

from __future__ import annotations

import contextlib
import copy
import random
from typing import Any

import pytest

from easel.comfy.convert import to_easel
from easel.comfy.mapping import NODE_MAPS
from easel.comfy.ui_format import bypass_input, types_match, widget_inputs
from easel.core.context import Context
from easel.core.graph import WorkflowError, validate
from tests.comfy.conftest import DATA, load_json


@pytest.fixture
def default_plus() -> dict[str, Any]:
    return load_json(DATA / "ui_default_plus.json")


def test_widgets_primitive_reroutes_bypass_mute_and_note(default_plus) -> None:
    workflow = to_easel(default_plus)
    nodes = workflow["nodes"]
    # Reroute, PrimitiveNode, Note and the muted PreviewImage are gone, the bypassed
    # LatentUpscale too; the other ids are ComfyUI's.
    assert sorted(nodes, key=int) == ["3", "4", "5", "6", "7", "8", "9"]
    sampler = nodes["3"]["inputs"]
    # The seed widget was converted to an input fed by a PrimitiveNode: its value is inlined,
    # and "randomize" (control_after_generate) never becomes a value.
    assert sampler == {
        "seed": 42,
        "steps": 20,
        "cfg": 8,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1,
        "model": ["4", "model"],
        "positive": ["6", "conditioning"],
        "negative": ["7", "conditioning"],
        "latent": ["5", "latent"],
    }
    assert nodes["5"]["inputs"] == {"width": 512, "height": 768, "batch_size": 2}
    # Bypassed LatentUpscale passes the sampler's latent on; two reroutes carry the VAE.
    assert nodes["8"]["inputs"] == {"latent": ["3", "latent"], "vae": ["4", "vae"]}
    assert nodes["9"]["inputs"] == {"filename_prefix": "lighthouse/shot", "image": ["8", "image"]}
    ui = workflow["ui"]
    assert ui["titles"] == {"3": "Main sampler"}
    assert ui["positions"]["3"] == [863.0, 186.0]
    assert set(ui["positions"]) == set(nodes)
    assert ui["notes"]["10"]["text"] == "Seed 42 gives the nicest lighthouse."


def test_schema_v1_links_objects_and_advanced_sampler() -> None:
    nodes = to_easel(load_json(DATA / "ui_img2img_v1.json"))["nodes"]
    assert nodes["7"] == {
        "type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": True,
            "seed": 7,
            "steps": 30,
            "cfg": 6.5,
            "sampler_name": "dpmpp_2m_sde",
            "scheduler": "karras",
            "start_at_step": 0,
            "end_at_step": 10000,
            "return_with_leftover_noise": False,
            "model": ["1", "model"],
            "positive": ["5", "conditioning"],
            "negative": ["6", "conditioning"],
            "latent": ["4", "latent"],
        },
    }
    assert nodes["2"] == {"type": "LoadImage", "inputs": {"image": "photo.png"}}
    assert nodes["3"] == {
        "type": "Upscale",
        "inputs": {
            "method": "bilinear",
            "width": 512,
            "height": 512,
            "image": ["2", "image"],
            "scale": 1.0,
        },
    }
    assert nodes["4"]["inputs"] == {"image": ["3", "image"], "vae": ["1", "vae"]}
    assert nodes["6"]["type"] == "ConditioningZeroOut"


def test_ui_files_validate_against_the_registry(default_plus, registry, tiny_env, tmp_path) -> None:
    for data in (default_plus, load_json(DATA / "ui_img2img_v1.json")):
        workflow = to_easel(data)
        loader = registry.get("CheckpointLoader")
        choices = loader.inputs["name"].current_choices()
        if choices:
            for node in workflow["nodes"].values():
                if node["type"] == "CheckpointLoader":
                    node["inputs"]["name"] = choices[0]
        (tmp_path / "photo.png").write_bytes(b"")  # only its existence is checked here
        plan = validate(workflow, registry, context=Context(services={"input_dir": tmp_path}))
        assert plan.targets == ["9"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            [5, "fixed", 20, 7.5, "euler", "karras", 0.5],
            {
                "seed": 5,
                "steps": 20,
                "cfg": 7.5,
                "sampler_name": "euler",
                "scheduler": "karras",
                "denoise": 0.5,
            },
        ),
        # Files saved through the API or by older frontends have no control entry.
        (
            [5, 20, 7.5, "euler", "karras", 0.5],
            {
                "seed": 5,
                "steps": 20,
                "cfg": 7.5,
                "sampler_name": "euler",
                "scheduler": "karras",
                "denoise": 0.5,
            },
        ),
        ([9, "decrement", 4], {"seed": 9, "steps": 4}),
        # Files from 2023: the "random seed" toggle stored a boolean after the seed.
        (
            [5, True, 20, 7.5, "euler", "karras", 0.5],
            {
                "seed": 5,
                "steps": 20,
                "cfg": 7.5,
                "sampler_name": "euler",
                "scheduler": "karras",
                "denoise": 0.5,
            },
        ),
        ([5, False, 20], {"seed": 5, "steps": 20}),
    ],
)
def test_positional_widgets_skip_control_after_generate(values, expected) -> None:
    assert widget_inputs(NODE_MAPS["KSampler"], values) == expected


def test_advanced_sampler_widgets_with_control() -> None:
    values = ["disable", 3, "randomize", 12, 5.0, "euler", "normal", 0, 10000, "enable"]
    assert widget_inputs(NODE_MAPS["KSamplerAdvanced"], values) == {
        "add_noise": "disable",
        "noise_seed": 3,
        "steps": 12,
        "cfg": 5.0,
        "sampler_name": "euler",
        "scheduler": "normal",
        "start_at_step": 0,
        "end_at_step": 10000,
        "return_with_leftover_noise": "enable",
    }


def _node(data: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(n for n in data["nodes"] if n["id"] == node_id)


def test_muted_source_drops_what_needs_it(default_plus) -> None:
    """As in ComfyUI, a node whose required input comes from a muted node cannot run, nor can
    what needs it: they are dropped, and the outputs that do not need them still run."""
    data = copy.deepcopy(default_plus)
    _node(data, 11)["mode"] = 0  # the muted preview of the decoded image runs again
    _node(data, 14)["mode"] = 2  # the upscale between the sampler and the decoder is muted
    with pytest.raises(WorkflowError) as caught:
        to_easel(data)  # the decoder, the saver and the preview all need it: nothing runs
    [problem] = caught.value.problems
    assert problem.message == (
        "nothing to run: every output node is muted, bypassed or needs a muted node (muted: 14)"
    )
    data["nodes"].append(
        {
            "id": 30,
            "type": "PreviewImage",
            "mode": 0,
            "pos": [0, 900],
            "inputs": [{"name": "images", "type": "IMAGE", "link": 40}],
        }
    )
    data["nodes"].append(
        {
            "id": 31,
            "type": "LoadImage",
            "mode": 0,
            "pos": [0, 700],
            "outputs": [
                {"name": "IMAGE", "type": "IMAGE", "links": [40]},
                {"name": "MASK", "type": "MASK", "links": []},
            ],
            "widgets_values": ["photo.png", "image"],
        }
    )
    data["links"].append([40, 31, 0, 30, 0, "IMAGE"])
    nodes = to_easel(data)["nodes"]
    assert sorted(nodes, key=int) == ["3", "4", "5", "6", "7", "30", "31"]


def test_muted_source_of_an_optional_input_keeps_the_consumer() -> None:
    prompt_nodes = to_easel(load_json(DATA / "sd15_controlnet.json"))["nodes"]
    assert prompt_nodes["22"]["inputs"]["vae"] == ["4", "vae"]
    data = load_json(DATA / "sd15_controlnet.json")
    data["nodes"].append(
        {
            "id": 40,
            "type": "VAELoader",
            "mode": 2,
            "pos": [0, 0],
            "outputs": [{"name": "VAE", "type": "VAE", "links": [90]}],
            "widgets_values": ["other_vae.safetensors"],
        }
    )
    data["links"].append([90, 40, 0, 22, 4, "VAE"])
    _node(data, 22)["inputs"][4]["link"] = 90
    nodes = to_easel(data)["nodes"]
    assert "vae" not in nodes["22"]["inputs"] and nodes["3"]["inputs"]["positive"] == [
        "25",
        "conditioning",
    ]


def test_bypassed_node_without_matching_input_passes_nothing(default_plus) -> None:
    data = copy.deepcopy(default_plus)
    _node(data, 8)["mode"] = 4  # VAEDecode: no IMAGE input to pass through
    workflow = to_easel(data)
    assert "8" not in workflow["nodes"]
    assert "image" not in workflow["nodes"]["9"]["inputs"]


def test_bypass_chooses_the_input_of_the_matching_type(default_plus) -> None:
    data = copy.deepcopy(default_plus)
    # A bypassed VAEEncode-like node whose first input is not the type the consumer wants.
    upscale = _node(data, 14)
    upscale["inputs"] = [
        {"name": "vae", "type": "VAE", "link": None},
        {"name": "samples", "type": "LATENT", "link": 7},
    ]
    nodes = to_easel(data)["nodes"]
    assert nodes["8"]["inputs"]["latent"] == ["3", "latent"]


def test_unsupported_ui_nodes_are_listed_with_their_ids(default_plus) -> None:
    data = copy.deepcopy(default_plus)
    _node(data, 5)["type"] = "SDXLEmptyLatentSizePicker+"
    _node(data, 7)["type"] = "SomePackTextEncode+"
    with pytest.raises(WorkflowError) as caught:
        to_easel(data)
    unsupported = {(p.node, p.node_type) for p in caught.value.problems if p.node}
    assert unsupported == {("5", "SDXLEmptyLatentSizePicker+"), ("7", "SomePackTextEncode+")}
    assert "KSampler" in str(caught.value)  # the list of what does convert


def test_subgraph_nodes_expand_into_their_inner_nodes(default_plus) -> None:
    # More in tests/comfy/test_subgraphs.py. An empty subgraph gives the sampler no negative.
    data = copy.deepcopy(default_plus)
    uuid = "0b6e1c52-88c9-4bd4-9a0f-3a1bb8f3f0d2"
    _node(data, 7)["type"] = uuid
    data["definitions"] = {"subgraphs": [{"id": uuid, "nodes": [], "links": []}]}
    nodes = to_easel(data)["nodes"]
    assert "7" not in nodes and "negative" not in nodes["3"]["inputs"]


def test_group_nodes_ask_to_be_converted_to_nodes(default_plus) -> None:
    data = copy.deepcopy(default_plus)
    _node(data, 7)["type"] = "workflow>negative prompt"
    data["extra"] = {"groupNodes": {"negative prompt": {"nodes": [], "links": []}}}
    with pytest.raises(WorkflowError) as caught:
        to_easel(data)
    [problem] = caught.value.problems  # the sampler's link to it adds no second complaint
    assert (problem.node, problem.node_type) == ("7", "workflow>negative prompt")
    assert "group nodes are not converted" in problem.message


def test_old_litegraph_positions_stored_as_objects(default_plus) -> None:
    data = copy.deepcopy(default_plus)
    _node(data, 3)["pos"] = {"0": 12.5, "1": -40}
    assert to_easel(data)["ui"]["positions"]["3"] == [12.5, -40.0]


def test_bypassed_unsupported_node_is_passed_through(default_plus) -> None:
    """A bypassed LoRA loader is a common sight: its inputs flow on by type."""
    data = copy.deepcopy(default_plus)
    data["nodes"].append(
        {
            "id": 20,
            "type": "LoraLoader",
            "pos": [200, 200],
            "mode": 4,
            "inputs": [
                {"name": "model", "type": "MODEL", "link": 1},
                {"name": "clip", "type": "CLIP", "link": 2},
            ],
            "outputs": [
                {"name": "MODEL", "type": "MODEL", "links": [21], "slot_index": 0},
                {"name": "CLIP", "type": "CLIP", "links": [22], "slot_index": 1},
            ],
            "widgets_values": ["style.safetensors", 1.0, 1.0],
        }
    )
    data["links"] = [link for link in data["links"] if link[0] not in (1, 2)] + [
        [1, 4, 0, 20, 0, "MODEL"],
        [2, 4, 1, 20, 1, "CLIP"],
        [21, 20, 0, 3, 0, "MODEL"],
        [22, 20, 1, 6, 0, "CLIP"],
    ]
    _node(data, 3)["inputs"][0]["link"] = 21
    _node(data, 6)["inputs"][0]["link"] = 22
    nodes = to_easel(data)["nodes"]
    assert "20" not in nodes
    assert nodes["3"]["inputs"]["model"] == ["4", "model"]
    assert nodes["6"]["inputs"]["clip"] == ["4", "clip"]
    _node(data, 20)["mode"] = 0
    nodes = to_easel(data)["nodes"]
    assert nodes["20"] == {
        "type": "LoraLoader",
        "inputs": {
            "name": "style.safetensors",
            "strength_model": 1.0,
            "strength_clip": 1.0,
            "model": ["4", "model"],
            "clip": ["4", "clip"],
        },
    }
    assert nodes["3"]["inputs"]["model"] == ["20", "model"]


def test_link_types_match_as_litegraph_decides() -> None:
    assert types_match("IMAGE", "IMAGE") and types_match("*", "LATENT")
    assert types_match("", "MODEL") and types_match(None, "MODEL")
    assert types_match("IMAGE,MASK", "mask")  # comma lists, case-insensitive
    assert not types_match("IMAGE", "MASK") and not types_match("IMAGE,MASK", "LATENT")


def _bypassed(inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    return {
        "inputs": [{"name": kind.lower(), "type": kind, "link": None} for kind in inputs],
        "outputs": [{"name": kind, "type": kind} for kind in outputs],
    }


@pytest.mark.parametrize(
    ("inputs", "outputs", "slot", "wanted", "expected"),
    [
        # The input in the output's slot when its type fits the output and the consumer.
        (["LATENT", "LATENT"], ["LATENT", "LATENT"], 1, "LATENT", 1),
        # Else the first input of exactly the wanted type.
        (["VAE", "LATENT"], ["LATENT"], 0, "LATENT", 1),
        # Else the first input whose type fits both.
        (["VAE", "IMAGE,MASK"], ["MASK"], 0, "MASK", 1),
        # A consumer of any type takes the same slot, or the first input.
        (["MODEL", "CLIP"], ["MODEL", "CLIP"], 1, "*", 1),
        (["MODEL"], ["MODEL", "CLIP"], 1, "*", 0),
        # Nothing fits: nothing passes.
        (["VAE"], ["IMAGE"], 0, "IMAGE", None),
    ],
)
def test_bypassed_node_passes_the_input_comfyui_chooses(
    inputs, outputs, slot, wanted, expected
) -> None:
    assert bypass_input(_bypassed(inputs, outputs), slot, wanted) == expected


def test_control_after_generate_as_old_boolean_in_a_whole_file(default_plus) -> None:
    data = copy.deepcopy(default_plus)
    sampler = _node(data, 3)
    sampler["widgets_values"][1] = True
    assert to_easel(data)["nodes"]["3"]["inputs"]["steps"] == 20


GARBAGE = [None, 1, "x", [], {}, [1, 2], {"a": 1}, True, -1.5, [None], {"0": "a"}, ["3", 9]]


def _corrupt(data: dict[str, Any], rng: Any) -> None:
    """Put a wrong-typed value somewhere a hand-edited file might: a node field, a socket, a
    link, a group or a top-level key."""
    value = rng.choice(GARBAGE)
    node = rng.choice(data["nodes"])
    where = rng.choice(["node", "socket", "link", "group", "top"])
    if where == "node":
        node[
            rng.choice(
                [
                    "inputs",
                    "outputs",
                    "widgets_values",
                    "mode",
                    "pos",
                    "size",
                    "title",
                    "type",
                    "id",
                ]
            )
        ] = value
    elif where == "socket" and isinstance(node.get("inputs"), list) and node["inputs"]:
        if isinstance(node["inputs"][0], dict):
            node["inputs"][0][rng.choice(["link", "type", "name", "widget"])] = value
    elif where == "link" and isinstance(data["links"], list) and data["links"]:
        data["links"][rng.randrange(len(data["links"]))] = value
    elif where == "group" and isinstance(data["groups"], list) and data["groups"]:
        data["groups"][0] = value
    else:
        data[rng.choice(["groups", "definitions", "extra", "links"])] = value


@pytest.mark.parametrize("name", ["sd15_inpaint.json", "sd15_lora_embedding.json"])
def test_hand_edited_files_give_problems_never_crashes(name: str) -> None:
    """What the server turns into a 400: a WorkflowError, or a converted workflow."""
    rng = random.Random(1234)
    original = load_json(DATA / name)
    for _ in range(300):
        data = copy.deepcopy(original)
        for _ in range(rng.randint(1, 3)):
            _corrupt(data, rng)
        with contextlib.suppress(WorkflowError):
            to_easel(data)
