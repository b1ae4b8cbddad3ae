"""The converter on real ComfyUI workflow files (API format) from public repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from easel.comfy.convert import set_checkpoint, to_easel
from easel.core.context import Context
from easel.core.graph import parse_workflow, validate
from easel.workflow_files import read_workflow
from tests.comfy.conftest import SHARED_COMFY, load_json, real_comfy_files


def convert(name: str) -> dict:
    return to_easel(load_json(SHARED_COMFY / name))


def test_basic_api_example_maps_every_node_and_link() -> None:
    workflow = convert("comfyui_script_examples_basic_api_example.api.json")
    nodes = workflow["nodes"]
    assert {k: v["type"] for k, v in nodes.items()} == {
        "3": "KSampler",
        "4": "CheckpointLoader",
        "5": "EmptyLatent",
        "6": "TextEncode",
        "7": "TextEncode",
        "8": "VAEDecode",
        "9": "SaveImage",
    }
    assert nodes["3"]["inputs"] == {
        "cfg": 8,
        "denoise": 1,
        "latent": ["5", "latent"],
        "model": ["4", "model"],
        "negative": ["7", "conditioning"],
        "positive": ["6", "conditioning"],
        "sampler_name": "euler",
        "scheduler": "normal",
        "seed": 8566257,
        "steps": 20,
    }
    assert nodes["4"]["inputs"] == {"name": "v1-5-pruned-emaonly.safetensors"}
    assert nodes["6"]["inputs"] == {"clip": ["4", "clip"], "text": "masterpiece best quality girl"}
    assert nodes["8"]["inputs"] == {"latent": ["3", "latent"], "vae": ["4", "vae"]}
    assert nodes["9"]["inputs"] == {"filename_prefix": "ComfyUI", "image": ["8", "image"]}
    assert set(workflow["ui"]["positions"]) == set(nodes)
    # The loader has no inputs, so it sits left of the sampler, which sits left of the decoder.
    positions = workflow["ui"]["positions"]
    assert positions["4"][0] < positions["3"][0] < positions["8"][0] < positions["9"][0]


def test_sdxl_refiner_graph_converts_faithfully() -> None:
    """The base pass is a KSamplerAdvanced over the whole schedule (its end, 32, is past the
    last of 20 steps); the refiner pass that starts at step 32 of 20 does nothing in ComfyUI,
    so its consumer reads the base latent."""
    nodes = convert("comfyui_tests_default_graph_sdxl1_0.api.json")["nodes"]
    assert nodes["10"] == {
        "type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": True,
            "seed": 42,
            "steps": 20,
            "cfg": 7.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "start_at_step": 0,
            "end_at_step": 32,
            "return_with_leftover_noise": True,
            "model": ["4", "model"],
            "positive": ["6", "conditioning"],
            "negative": ["15", "conditioning"],
            "latent": ["5", "latent"],
        },
    }
    assert "14" not in nodes
    assert nodes["12"]["inputs"]["latent"] == ["10", "latent"]
    assert nodes["15"] == {
        "type": "ConditioningZeroOut",
        "inputs": {"conditioning": ["6", "conditioning"]},
    }
    assert nodes["13"]["inputs"] == {"filename_prefix": "test_inference", "image": ["12", "image"]}


def test_img2img_titles_stray_control_and_unconnected_node() -> None:
    workflow = convert("ericHuang_img2img.api.json")
    nodes = workflow["nodes"]
    assert "control_after_generate" not in nodes["6"]["inputs"]
    assert nodes["6"]["inputs"]["denoise"] == 0.7
    assert nodes["6"]["inputs"]["latent"] == ["8", "latent"]
    assert nodes["8"] == {
        "type": "VAEEncode",
        "inputs": {"image": ["4", "image"], "vae": ["1", "vae"]},
    }
    assert nodes["4"] == {"type": "LoadImage", "inputs": {"image": "reference.png"}}
    assert nodes["5"]["type"] == "EmptyLatent"  # kept; it never runs, as in ComfyUI
    assert workflow["ui"]["titles"]["6"] == "KSampler Img2Img"
    assert workflow["ui"]["titles"]["4"] == "Load Reference Image"


@pytest.mark.parametrize("path", real_comfy_files(), ids=lambda p: p.name)
def test_real_files_validate_against_the_registry(path: Path, registry, tiny_env, tmp_path) -> None:
    workflow = to_easel(load_json(path))
    parse_workflow(workflow)  # the Easel format itself
    loader = registry.get("CheckpointLoader")
    choices = loader.inputs["name"].current_choices() if loader else None
    if choices:  # the real loader only accepts installed models: what --checkpoint is for
        assert set_checkpoint(workflow, choices[0])
    (tmp_path / "reference.png").write_bytes(_tiny_png())
    plan = validate(workflow, registry, context=Context(services={"input_dir": tmp_path}))
    save_nodes = [n for n, spec in workflow["nodes"].items() if spec["type"] == "SaveImage"]
    assert plan.targets == save_nodes
    if path.name == "ericHuang_img2img.api.json":
        assert "5" not in plan.order  # the unconnected EmptyLatentImage never runs


@pytest.mark.parametrize("path", real_comfy_files(), ids=lambda p: p.name)
def test_read_workflow_accepts_comfy_files_directly(path: Path) -> None:
    """What `easel run file.json` and the server do with a ComfyUI file."""
    assert read_workflow(path) == to_easel(load_json(path))


def test_node_ids_are_kept_for_set_overrides() -> None:
    from easel.cli.run_cmd import apply_overrides

    workflow = convert("comfyui_script_examples_basic_api_example.api.json")
    apply_overrides(workflow, ["3.steps=4"], "easel-shapes")
    assert workflow["nodes"]["3"]["inputs"]["steps"] == 4
    assert workflow["nodes"]["4"]["inputs"]["name"] == "easel-shapes"


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()
