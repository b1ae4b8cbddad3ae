"""Lotus depth: ComfyUI's own template (`image_lotus_depth_v1_1` of the
`comfyui-workflow-templates-json` corpus, in the dev extra) runs end to end on a tiny Lotus
UNet written in ComfyUI's file layout, and its depth image equals Lotus-D computed by hand
with the diffusers modules (VAE encode, one UNet call at timestep 999 with the empty-prompt
embedding and the task embedding, VAE decode, invert). LotusConditioning is SD 2's text
encoder's reading of the empty prompt, computed from the SD 2 checkpoint in the models folder.
The variants (other key layout, a linked CLIP, the errors) run with --slow."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.fixtures import lotus_family

PACKAGE = "comfyui_workflow_templates_json"
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def lotus_models(tmp_path_factory: pytest.TempPathFactory) -> lotus_family.LotusModels:
    return lotus_family.build(tmp_path_factory.mktemp("lotus"))


def run(
    workflow: dict[str, Any], roots: list[Path], out: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    import os

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    return executor.run(workflow, output_dir=out, keep_values=True)


def picture(folder: Path) -> tuple[Path, Any]:
    """A 64x64 RGB picture on disk and as [1, 3, H, W] in [0, 1]."""
    from PIL import Image

    pixels = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")
    path = folder / "picture.png"
    Image.fromarray(pixels).save(path)
    return path, torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255


def of_type(nodes: dict[str, Any], kind: str) -> list[str]:
    return [node_id for node_id, node in nodes.items() if node["type"] == kind]


@pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)
def test_lotus_depth_template_equals_diffusers_unet(
    lotus_models: lotus_family.LotusModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "templates" / "image_lotus_depth_v1_1.json"
    workflow = to_easel(json.loads(path.read_text(encoding="utf-8")))
    nodes = workflow["nodes"]
    [load] = of_type(nodes, "LoadImage")
    image_path, pixels = picture(tmp_path)
    set_input(workflow, f"{load}.image", str(image_path))
    [first] = of_type(nodes, "SetFirstSigma")
    assert float(nodes[first]["inputs"]["sigma"]) == pytest.approx(999.0)
    result = run(workflow, lotus_models.roots, tmp_path / "out", monkeypatch)
    assert result.ok, result.failures
    [invert] = of_type(nodes, "InvertImage")
    ours = result.values[invert]["image"]
    theirs = lotus_family.depth_reference(lotus_models, pixels)
    assert float(theirs.std()) > 0.01
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= TOLERANCE

    [conditioning] = of_type(nodes, "LotusConditioning")
    embeds = result.values[conditioning]["conditioning"]["embeds"]
    reference = lotus_family.empty_prompt_reference(lotus_models.sd2)
    assert embeds.shape == reference.shape == (1, 2, reference.shape[-1])
    assert torch.allclose(embeds, reference, atol=1e-5)


def lotus_nodes(image: Path, *, clip_from: str | None = None) -> dict[str, Any]:
    """The template's graph, written out: Lotus-D in one step."""
    nodes: dict[str, Any] = {
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": lotus_family.UNET_FILE}},
        "vae": {"type": "VAELoader", "inputs": {"name": lotus_family.VAE_FILE}},
        "img": {"type": "LoadImage", "inputs": {"image": str(image)}},
        "enc": {"type": "VAEEncode", "inputs": {"image": ["img", "image"], "vae": ["vae", "vae"]}},
        "cond": {"type": "LotusConditioning", "inputs": {}},
        "guide": {
            "type": "BasicGuider",
            "inputs": {"model": ["unet", "model"], "conditioning": ["cond", "conditioning"]},
        },
        "sched": {
            "type": "BasicScheduler",
            "inputs": {"model": ["unet", "model"], "scheduler": "normal", "steps": 1},
        },
        "first": {"type": "SetFirstSigma", "inputs": {"sigmas": ["sched", "sigmas"], "sigma": 999}},
        "sampler": {"type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "noise": {"type": "DisableNoise", "inputs": {}},
        "sample": {
            "type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", "noise"],
                "guider": ["guide", "guider"],
                "sampler": ["sampler", "sampler"],
                "sigmas": ["first", "sigmas"],
                "latent_image": ["enc", "latent"],
            },
        },
        "dec": {
            "type": "VAEDecode",
            "inputs": {"latent": ["sample", "output"], "vae": ["vae", "vae"]},
        },
        "inv": {"type": "InvertImage", "inputs": {"image": ["dec", "image"]}},
        "show": {"type": "PreviewImage", "inputs": {"image": ["inv", "image"]}},
    }
    if clip_from is not None:
        nodes["ckpt"] = {"type": "CheckpointLoader", "inputs": {"name": clip_from}}
        nodes["cond"]["inputs"]["clip"] = ["ckpt", "clip"]
    return {"format": "easel.workflow", "version": 1, "nodes": nodes}


@pytest.mark.slow
def test_lotus_file_with_ldm_prefix_and_linked_clip(
    lotus_models: lotus_family.LotusModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UNet under `model.diffusion_model.` loads the same; a CLIP linked to
    LotusConditioning (an SD 2 checkpoint's) gives the same conditioning."""
    import shutil

    from safetensors.torch import save_file

    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    save_file(
        lotus_family.unet_ldm(lotus_models.unet, "model.diffusion_model."),
        str(models / "diffusion_models" / lotus_family.UNET_FILE),
    )
    shutil.copytree(lotus_models.root / "models" / "vae", models / "vae")
    shutil.copytree(lotus_models.root / "models" / "checkpoints", models / "elsewhere")
    roots = [models, lotus_models.root / "ComfyUI"]
    image, pixels = picture(tmp_path)
    # no checkpoints/ here: the conditioning can only come from the linked CLIP
    (models / "checkpoints").mkdir()
    shutil.copyfile(
        models / "elsewhere" / "sd2.safetensors", models / "checkpoints" / "sd2-base.safetensors"
    )
    result = run(
        lotus_nodes(image, clip_from="sd2-base.safetensors"), roots, tmp_path / "o", monkeypatch
    )
    assert result.ok, result.failures
    theirs = lotus_family.depth_reference(lotus_models, pixels)
    assert (result.values["inv"]["image"] - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_lotus_conditioning_without_sd2_checkpoint_names_what_is_missing(
    lotus_models: lotus_family.LotusModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    models = tmp_path / "models"
    shutil.copytree(lotus_models.root / "models" / "diffusion_models", models / "diffusion_models")
    shutil.copytree(lotus_models.root / "models" / "vae", models / "vae")
    image, _ = picture(tmp_path)
    result = run(lotus_nodes(image), [models], tmp_path / "o", monkeypatch)
    assert not result.ok
    [failure] = result.failures
    assert failure.node == "cond" and failure.input == "clip"
    assert "Stable Diffusion 2" in failure.message and "checkpoints/" in failure.message


@pytest.mark.slow
def test_lotus_file_is_recognised_from_its_header(
    lotus_models: lotus_family.LotusModels,
) -> None:
    from easel.models.families import lotus
    from easel.models.family_files import header

    path = lotus_models.root / "models" / "diffusion_models" / lotus_family.UNET_FILE
    keys = header(path)
    assert keys is not None and lotus.recognise(keys) is lotus.LOTUS_D
    sd2 = header(lotus_models.root / "models" / "checkpoints" / "sd2.safetensors")
    assert sd2 is not None and lotus.recognise(sd2) is None
