"""ComfyUI files for real checkpoints (LoRA, embeddings, SDXL base + refiner, inpainting,
ControlNet, ESRGAN) in the UI and API formats: what they convert to, node by node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from easel.comfy.convert import set_checkpoint, to_easel
from easel.core.context import Context
from easel.core.graph import WorkflowError, parse_workflow, validate
from tests.comfy.conftest import DATA, load_json

PAIRS = [
    "sd15_lora_embedding",
    "sd15_inpaint",
    "sd15_controlnet",
    "sdxl_base_refiner",
    "esrgan_upscale",
]
REAL_TEMPLATE = DATA / "templates_sdxl_simple_example.json"
UI_FILES = [DATA / f"{name}.json" for name in PAIRS] + [REAL_TEMPLATE]


def convert(name: str) -> dict[str, Any]:
    return to_easel(load_json(DATA / name))


def types(workflow: dict[str, Any]) -> dict[str, str]:
    return {node_id: node["type"] for node_id, node in workflow["nodes"].items()}


@pytest.mark.parametrize("name", PAIRS)
def test_ui_and_api_files_of_one_graph_convert_alike(name: str) -> None:
    ui_nodes = convert(f"{name}.json")["nodes"]
    api_nodes = convert(f"{name}.api.json")["nodes"]
    if name == "sdxl_base_refiner":
        # "Save (API)" keeps the consumers of the muted ESRGAN loader, without the input;
        # from the UI file the branch that needs the muted loader is dropped.
        assert api_nodes.pop("32") == {
            "type": "ImageUpscaleWithModel",
            "inputs": {"image": ["17", "image"]},
        }
        assert api_nodes.pop("33")["inputs"]["image"] == ["32", "image"]
    assert ui_nodes == api_nodes


def test_lora_clip_skip_embedding_and_vae_file() -> None:
    workflow = convert("sd15_lora_embedding.json")
    nodes = workflow["nodes"]
    # The bypassed second LoRA (11), the reroute (14), the note (16) and the muted preview
    # (15) are gone.
    assert types(workflow) == {
        "3": "KSampler",
        "4": "CheckpointLoader",
        "5": "EmptyLatent",
        "6": "TextEncode",
        "7": "TextEncode",
        "8": "VAEDecode",
        "9": "SaveImage",
        "10": "LoraLoader",
        "12": "CLIPSetLastLayer",
        "13": "VAELoader",
    }
    assert nodes["4"]["inputs"] == {"name": "sd15/v1-5-pruned-emaonly.safetensors"}
    assert nodes["10"]["inputs"] == {
        "name": "styles/ink_wash.safetensors",
        "strength_model": 0.8,
        "strength_clip": 0.6,
        "model": ["4", "model"],
        "clip": ["4", "clip"],
    }
    # The bypassed LoRA passes the first LoRA's model and clip on, each by its type.
    assert nodes["3"]["inputs"]["model"] == ["10", "model"]
    assert nodes["12"]["inputs"] == {"stop_at_clip_layer": -2, "clip": ["10", "clip"]}
    assert nodes["6"]["inputs"]["clip"] == nodes["7"]["inputs"]["clip"] == ["12", "clip"]
    # Prompt syntax travels verbatim: TextEncode reads embeddings and weights.
    assert nodes["7"]["inputs"]["text"] == (
        "embedding:easynegative.safetensors, (blurry:1.3), watermark"
    )
    # The 2023 boolean "random seed" toggle after the seed is not a value.
    assert {
        k: nodes["3"]["inputs"][k]
        for k in ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")
    } == {
        "seed": 156680208700286,
        "steps": 25,
        "cfg": 7,
        "sampler_name": "dpmpp_2m",
        "scheduler": "karras",
        "denoise": 1,
    }
    assert nodes["8"]["inputs"] == {"latent": ["3", "latent"], "vae": ["13", "vae"]}
    ui = workflow["ui"]
    assert ui["groups"] == [
        {
            "title": "LoRAs",
            "bounding": [360.0, 340.0, 360.0, 420.0],
            "nodes": ["10"],
            "color": "#3f789e",
        },
        {
            "title": "Prompt",
            "bounding": [1080.0, 120.0, 470.0, 500.0],
            "nodes": ["6", "7"],
            "color": "#3f7e3f",
        },
    ]
    assert ui["notes"]["16"]["text"].startswith("The detail LoRA is bypassed")


def test_inpainting_file_both_ways_with_one_seed_primitive() -> None:
    nodes = convert("sd15_inpaint.json")["nodes"]
    assert nodes["2"] == {"type": "LoadImage", "inputs": {"image": "yellow_cat_on_park_bench.png"}}
    assert nodes["5"] == {
        "type": "VAEEncodeForInpaint",
        "inputs": {
            "grow_mask_by": 6,
            "image": ["2", "image"],
            "vae": ["1", "vae"],
            "mask": ["2", "mask"],
        },
    }
    assert nodes["6"] == {
        "type": "InpaintModelConditioning",
        "inputs": {
            "noise_mask": True,
            "positive": ["3", "conditioning"],
            "negative": ["4", "conditioning"],
            "vae": ["1", "vae"],
            "image": ["2", "image"],
            "mask": ["2", "mask"],
        },
    }
    assert nodes["7"]["inputs"]["latent"] == ["5", "latent"]
    sampler = nodes["8"]["inputs"]
    assert (sampler["positive"], sampler["negative"], sampler["latent"]) == (
        ["6", "positive"],
        ["6", "negative"],
        ["6", "latent"],
    )
    # One PrimitiveNode (its "increment" control is editor state) feeds both seeds.
    assert nodes["7"]["inputs"]["seed"] == sampler["seed"] == 1234567


def test_controlnet_file_chains_two_controlnets_and_a_noise_mask() -> None:
    nodes = convert("sd15_controlnet.json")["nodes"]
    assert nodes["20"] == {
        "type": "ControlNetLoader",
        "inputs": {"name": "sd15/control_v11p_sd15_openpose.safetensors"},
    }
    assert nodes["22"] == {
        "type": "ControlNetApplyAdvanced",
        "inputs": {
            "strength": 0.85,
            "start_percent": 0,
            "end_percent": 0.8,
            "positive": ["6", "conditioning"],
            "negative": ["7", "conditioning"],
            "control_net": ["20", "control_net"],
            "image": ["21", "image"],
            "vae": ["4", "vae"],
        },
    }
    assert nodes["25"] == {
        "type": "ControlNetApply",
        "inputs": {
            "strength": 0.5,
            "conditioning": ["22", "positive"],
            "control_net": ["23", "control_net"],
            "image": ["24", "image"],
        },
    }
    assert nodes["26"] == {
        "type": "SetLatentNoiseMask",
        "inputs": {"latent": ["5", "latent"], "mask": ["24", "mask"]},
    }
    sampler = nodes["3"]["inputs"]
    assert (sampler["positive"], sampler["negative"], sampler["latent"]) == (
        ["25", "conditioning"],
        ["22", "negative"],
        ["26", "latent"],
    )
    assert (sampler["seed"], sampler["sampler_name"]) == (8, "dpmpp_2m_sde")


def test_sdxl_base_refiner_file_splits_one_schedule() -> None:
    workflow = convert("sdxl_base_refiner.json")
    nodes = workflow["nodes"]
    assert nodes["6"] == {
        "type": "TextEncodeSDXL",
        "inputs": {
            "width": 4096,
            "height": 4096,
            "crop_w": 0,
            "crop_h": 0,
            "target_width": 1024,
            "target_height": 1024,
            "text_g": "a glass bottle with a galaxy inside, evening sunset",
            "text_l": "a glass bottle with a galaxy inside",
            "clip": ["4", "clip"],
        },
    }
    assert nodes["16"] == {
        "type": "TextEncodeSDXLRefiner",
        "inputs": {
            "ascore": 2.5,
            "width": 1024,
            "height": 1024,
            "text": "text, watermark",
            "clip": ["12", "clip"],
        },
    }
    base, refiner = nodes["10"]["inputs"], nodes["11"]["inputs"]
    # The step widgets were converted to inputs fed by PrimitiveNodes: 25 steps, split at 20.
    assert {
        k: base[k]
        for k in (
            "add_noise",
            "seed",
            "steps",
            "start_at_step",
            "end_at_step",
            "return_with_leftover_noise",
        )
    } == {
        "add_noise": True,
        "seed": 721897303308196,
        "steps": 25,
        "start_at_step": 0,
        "end_at_step": 20,
        "return_with_leftover_noise": True,
    }
    assert {
        k: refiner[k]
        for k in (
            "add_noise",
            "steps",
            "start_at_step",
            "end_at_step",
            "return_with_leftover_noise",
            "latent",
            "model",
        )
    } == {
        "add_noise": False,
        "steps": 25,
        "start_at_step": 20,
        "end_at_step": 10000,
        "return_with_leftover_noise": False,
        "latent": ["10", "latent"],
        "model": ["12", "model"],
    }
    assert nodes["17"]["inputs"] == {"latent": ["11", "latent"], "vae": ["30", "vae"]}
    # The muted ESRGAN loader takes its branch with it.
    assert not {"31", "32", "33"} & set(nodes)
    assert [g["title"] for g in workflow["ui"]["groups"]] == ["Base", "Refiner", "Upscale (muted)"]
    assert workflow["ui"]["groups"][2]["nodes"] == []
    assert workflow["ui"]["titles"]["10"] == "KSampler (Advanced) - BASE"


def test_esrgan_file_upscales_with_the_model_then_halves() -> None:
    nodes = convert("esrgan_upscale.json")["nodes"]
    assert nodes["13"] == {
        "type": "UpscaleModelLoader",
        "inputs": {"name": "RealESRGAN_x4plus.pth"},
    }
    assert nodes["14"] == {
        "type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["13", "upscale_model"], "image": ["8", "image"]},
    }
    assert nodes["15"] == {
        "type": "Upscale",
        "inputs": {"method": "area", "scale": 0.5, "image": ["14", "image"]},
    }
    assert nodes["9"]["inputs"]["image"] == ["15", "image"]


def test_real_comfyui_template_sdxl_base_and_refiner() -> None:
    """ComfyUI's own SDXL template (frontend 1.18.9): primitives feed steps, the split point
    and both prompts; notes and groups are editor data."""
    workflow = to_easel(load_json(REAL_TEMPLATE))
    nodes = workflow["nodes"]
    assert types(workflow) == {
        "4": "CheckpointLoader",
        "5": "EmptyLatent",
        "6": "TextEncode",
        "7": "TextEncode",
        "10": "KSamplerAdvanced",
        "11": "KSamplerAdvanced",
        "12": "CheckpointLoader",
        "15": "TextEncode",
        "16": "TextEncode",
        "17": "VAEDecode",
        "19": "SaveImage",
    }
    assert nodes["4"]["inputs"] == {"name": "sd_xl_base_1.0.safetensors"}
    assert nodes["10"]["inputs"] == {
        "add_noise": True,
        "seed": 721897303308196,
        "steps": 25,
        "cfg": 8,
        "sampler_name": "euler",
        "scheduler": "normal",
        "start_at_step": 0,
        "end_at_step": 20,
        "return_with_leftover_noise": True,
        "model": ["4", "model"],
        "positive": ["6", "conditioning"],
        "negative": ["7", "conditioning"],
        "latent": ["5", "latent"],
    }
    assert nodes["11"]["inputs"] == {
        "add_noise": False,
        "seed": 0,
        "steps": 25,
        "cfg": 8,
        "sampler_name": "euler",
        "scheduler": "normal",
        "start_at_step": 20,
        "end_at_step": 10000,
        "return_with_leftover_noise": False,
        "model": ["12", "model"],
        "positive": ["15", "conditioning"],
        "negative": ["16", "conditioning"],
        "latent": ["10", "latent"],
    }
    prompt = "evening sunset scenery blue sky nature, glass bottle with a galaxy in it"
    assert nodes["6"]["inputs"]["text"] == nodes["15"]["inputs"]["text"] == prompt
    assert nodes["7"]["inputs"]["text"] == nodes["16"]["inputs"]["text"] == "text, watermark"
    ui = workflow["ui"]
    assert len(ui["groups"]) == 10 and ui["groups"][0]["title"] == "Base Prompt"
    assert set(ui["notes"]) == {"36", "37", "39", "40", "41", "42", "43", "48", "49", "52"}


# The models folder kind of each loader's `name` (ComfyUI's layout).
KINDS = {
    "CheckpointLoader": "checkpoints",
    "VAELoader": "vae",
    "LoraLoader": "loras",
    "LoraLoaderModelOnly": "loras",
    "ControlNetLoader": "controlnet",
    "UpscaleModelLoader": "upscale_models",
}


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_files_validate_with_the_names_they_use(
    path: Path, registry, tmp_path, monkeypatch
) -> None:
    """A models folder laid out as ComfyUI's, holding files under the names the workflow
    uses: every name resolves as it is, and the graph validates against the node
    signatures. Listing never opens a file, so empty placeholders stand in for models."""
    workflow = to_easel(load_json(path))
    parse_workflow(workflow)
    models = tmp_path / "models"
    for node in workflow["nodes"].values():
        if node["type"] in KINDS:
            placeholder = models / KINDS[node["type"]] / node["inputs"]["name"]
            placeholder.parent.mkdir(parents=True, exist_ok=True)
            placeholder.write_bytes(b"")
        if node["type"] == "LoadImage":
            (tmp_path / node["inputs"]["image"]).write_bytes(b"")
    monkeypatch.setenv("EASEL_MODELS_DIR", str(models))
    plan = validate(workflow, registry, context=Context(services={"input_dir": tmp_path}))
    assert plan.targets == [
        n for n, node in workflow["nodes"].items() if node["type"] == "SaveImage"
    ]


def test_checkpoint_option_replaces_every_checkpoint_name() -> None:
    workflow = convert("sdxl_base_refiner.json")
    assert set_checkpoint(workflow, "tiny-sdxl") == ["4", "12"]
    assert workflow["nodes"]["12"]["inputs"] == {"name": "tiny-sdxl"}
    assert workflow["nodes"]["30"]["inputs"] == {"name": "sdxl_vae.safetensors"}  # not a ckpt


def test_every_output_muted_is_reported() -> None:
    data = load_json(DATA / "esrgan_upscale.json")
    for node in data["nodes"]:
        if node["type"] == "SaveImage":
            node["mode"] = 2
    with pytest.raises(WorkflowError, match=r"nothing to run: .* \(muted: 9\)"):
        to_easel(data)
