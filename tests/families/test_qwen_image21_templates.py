"""ComfyUI's own Qwen-Image 2.1 text-to-image template (`image_qwen_image_2_1_t2i` of the
`comfyui-workflow-templates-json` corpus, in the dev extra: a subgraph with UNETLoader,
QwenImage21Cache, CLIPLoader type qwen_image, TextEncodeQwenImage21, KSampler, VAEDecode, and a
prompt-enhancer branch through TextGenerate that its switch leaves off) runs end to end on the
tiny Qwen-Image 2.1 models saved under the file names the template loads, and gives
QwenImage21Pipeline's image for the template's prompt and seed; so does its background-removal
template (a reference image through the vision tower and the VAE). Size and steps are made
small."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_qwen_image21_parity import TOLERANCE
from tests.families.workflows import as_tensor, only, template
from tests.fixtures import qwen_image21_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

qwen21_models = qwen_image21_family.qwen21_models
SIZE = 64
STEPS = 2
# the file names ComfyUI's Qwen-Image 2.1 templates load (the tiny files are fp32, not int8)
TEMPLATE_FILES = {
    "diffusion_models/qwen_image_2.1_int8_convrot.safetensors": (
        "diffusion_models/qwen_image_2.1.safetensors"
    ),
    "text_encoders/qwen3vl_8b_int8_convrot.safetensors": "text_encoders/qwen3vl_8b.safetensors",
    "vae/qwen_image_2.1_vae_bf16.safetensors": "vae/qwen_image_2.1_vae.safetensors",
}
PROMPT_ENHANCER = "qwen3.5_9b_qwen_image_2.1_pe_t2i.int8_convrot.safetensors"


@pytest.fixture(scope="module")
def template_root(qwen21_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qwen21-templates")
    for name, source in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(qwen21_models.root / "models" / source, root / "models" / name)
    shutil.copytree(qwen21_models.root / "ComfyUI", root / "ComfyUI")
    # the prompt enhancer the template's switch leaves off: present, so the workflow
    # validates, never read (a Switch runs only the branch it picks)
    from safetensors.torch import save_file

    save_file({"unused": torch.zeros(1)}, str(root / "models" / "text_encoders" / PROMPT_ENHANCER))
    return root


def test_t2i_template_runs_and_equals_qwen_image21_pipeline(
    template_root: Path, qwen21_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import numpy as np
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("image_qwen_image_2_1_t2i"))
    nodes = workflow["nodes"]
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    assert nodes[only(nodes, "QwenImage21Cache")]["inputs"]["device"] == "auto"
    switch = nodes[only(nodes, "Switch")]["inputs"]
    assert switch["switch"] is False, "the template's default skips the prompt enhancer"
    # The subgraph's promoted prompt widget reaches the Switch's any-typed input through the
    # constant node the converter adds.
    constant = switch["on_false"][0]
    assert nodes[constant]["type"] == "String"
    prompt = nodes[constant]["inputs"]["value"]
    nodes[latent]["inputs"]["width"] = SIZE
    nodes[latent]["inputs"]["height"] = SIZE
    set_input(workflow, f"{sampler}.steps", STEPS)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    picture = PILImage.open(tmp_path / saved)
    assert picture.mode == "RGBA"  # the 2.1 VAE decodes RGBA, saved with its alpha
    pixels = np.asarray(picture)
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    inputs = nodes[sampler]["inputs"]
    pipe = qwen21_models.pipe
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = pipe(
            prompt=prompt,
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
        ).images
    theirs = as_tensor(out)
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


def test_background_removal_template_runs_and_equals_the_pipeline(
    template_root: Path, qwen21_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`image_qwen_image_2_1_background_removal`: the loaded image through
    TextEncodeQwenImage21 (resolution 0: its own size) with the VAE, sampled at the encoder's
    latent (the template's switch), saved RGBA: QwenImage21Pipeline's image for that image."""
    import os

    import numpy as np
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    size = 288  # at least the 65,536 pixels Qwen3-VL's image processor takes
    rng = np.random.default_rng(5)
    picture = PILImage.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")
    picture.save(tmp_path / "angry_broccoli.png")
    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("image_qwen_image_2_1_background_removal"))
    nodes = workflow["nodes"]
    load, sampler = only(nodes, "LoadImage"), only(nodes, "KSampler")
    encoder = nodes[only(nodes, "TextEncodeQwenImage21")]["inputs"]
    assert encoder["resolution"] == 0 and encoder["image_1"][0] == load
    set_input(workflow, f"{load}.image", str(tmp_path / "angry_broccoli.png"))
    set_input(workflow, f"{sampler}.steps", STEPS)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    out_dir = tmp_path / "out"
    result = executor.run(workflow, output_dir=out_dir)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    saved_picture = PILImage.open(out_dir / saved)
    assert saved_picture.mode == "RGBA" and saved_picture.size == (size, size)
    ours = torch.from_numpy(np.asarray(saved_picture).copy()).permute(2, 0, 1)[None] / 255

    pipe = qwen21_models.pipe
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = pipe(
            prompt=encoder["prompt"],
            image=[picture],
            output_resolution=size,
            num_inference_steps=STEPS,
            generator=torch.Generator("cpu").manual_seed(int(nodes[sampler]["inputs"]["seed"])),
            output_type="np",
        ).images
    theirs = as_tensor(out)
    assert (ours.float() - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


def test_turbo_t2i_template_runs_and_equals_the_pipeline_on_its_sigmas(
    template_root: Path, qwen21_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`image_qwen_image_2_1_turbo_t2i`: custom sampling (ManualSigmas with the Turbo grid,
    KSamplerSelect euler, CFGGuider cfg 1, RandomNoise) through QwenImage21Cache: the pipeline's
    image on the same sigmas, taken as they are (its scheduler without a shift)."""
    import os

    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    turbo = (
        template_root
        / "models"
        / "diffusion_models"
        / ("qwen_image_2.1_turbo_int8_convrot.safetensors")
    )
    shutil.copyfile(
        qwen21_models.root / "models" / "diffusion_models" / "qwen_image_2.1.safetensors", turbo
    )
    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("image_qwen_image_2_1_turbo_t2i"))
    nodes = workflow["nodes"]
    latent = only(nodes, "EmptyLatent")
    switch = nodes[only(nodes, "Switch")]["inputs"]
    assert switch["switch"] is False
    prompt = nodes[switch["on_false"][0]]["inputs"]["value"]  # a constant node, as in t2i
    nodes[latent]["inputs"]["width"] = SIZE
    nodes[latent]["inputs"]["height"] = SIZE
    sigmas = [float(v) for v in nodes[only(nodes, "ManualSigmas")]["inputs"]["sigmas"].split(",")]
    assert sigmas[-1] == 0.0 and len(sigmas) == 9
    seed = int(nodes[only(nodes, "RandomNoise")]["inputs"]["noise_seed"])
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    pipe = qwen21_models.pipe
    original = pipe.scheduler
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        original.config, use_dynamic_shifting=False, shift=1.0
    )
    try:
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            out = pipe(
                prompt=prompt,
                height=SIZE,
                width=SIZE,
                sigmas=sigmas[:-1],
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="np",
            ).images
    finally:
        pipe.scheduler = original
    theirs = as_tensor(out)
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


@pytest.mark.parametrize(
    "name",
    [
        "image_qwen_image_2_1_t2i",
        "image_qwen_image_2_1_turbo_t2i",
        "image_qwen_image_2_1_image_edit",
        "image_qwen_image_2_1_turbo_image_edit",
        "image_qwen_image_2_1_background_removal",
    ],
)
def test_every_qwen_image21_template_converts(name: str) -> None:
    from easel.comfy.convert import to_easel

    nodes = to_easel(template(name))["nodes"]
    assert any(n["type"] == "TextEncodeQwenImage21" for n in nodes.values())
    assert any(n["type"] == "QwenImage21Cache" for n in nodes.values())
