"""ComfyUI's own HiDream-I1 template (the `comfyui-workflow-templates-json` corpus, in the dev
extra) runs end to end on the tiny HiDream models, saved under the file names the template
loads, and gives HiDreamImagePipeline's image for its prompt, seed and shift (size and steps
made small). The template samples with `lcm`, which Easel's flow-matching sampler table does not
have yet: the test samples with `euler`, the rest of the template as it is."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_hidream_parity import TOLERANCE, reference
from tests.families.workflows import template
from tests.fixtures import hidream_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

hidream_root = hidream_family.hidream_root
hidream_models = hidream_family.hidream_models
SIZE = 64
# the file names ComfyUI's HiDream templates load -> the tiny files
TEMPLATE_FILES = {
    "diffusion_models/hidream_i1_dev_fp8.safetensors": "dev",
    "text_encoders/clip_l_hidream.safetensors": "clip_l",
    "text_encoders/clip_g_hidream.safetensors": "clip_g",
    "text_encoders/t5xxl_fp8_e4m3fn_scaled.safetensors": "t5",
    "text_encoders/llama_3.1_8b_instruct_fp8_scaled.safetensors": "llama",
    "vae/ae.safetensors": "vae",
}


@pytest.fixture(scope="module")
def template_root(
    hidream_models: Any, hidream_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    _, files = hidream_models
    root = tmp_path_factory.mktemp("hidream-templates")
    for name, source in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[source], root / "models" / name)
    shutil.copytree(hidream_root / "ComfyUI", root / "ComfyUI")
    return root


def test_hidream_dev_template_runs_and_equals_the_pipeline(
    template_root: Path, hidream_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    workflow = to_easel(template("hidream_i1_dev"))
    nodes = workflow["nodes"]
    types = {n["type"] for n in nodes.values()}
    assert {"QuadrupleTextEncoderLoader", "DiffusionModelLoader", "ModelSamplingSD3"} <= types
    [latent] = [i for i, n in nodes.items() if n["type"] == "EmptyLatent"]
    [sampler] = [i for i, n in nodes.items() if n["type"] == "KSampler"]
    [shift] = [n["inputs"]["shift"] for n in nodes.values() if n["type"] == "ModelSamplingSD3"]
    inputs = nodes[sampler]["inputs"]
    assert (inputs["sampler_name"], inputs["scheduler"], inputs["cfg"]) == ("lcm", "normal", 1)
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", 2)
    set_input(workflow, f"{sampler}.sampler_name", "euler")
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    positive = nodes[inputs["positive"][0]]["inputs"]["text"]
    pipe, _ = hidream_models
    theirs = reference(
        pipe,
        shift=float(shift),
        prompt=positive,
        num_inference_steps=2,
        guidance_scale=1.0,
        generator_seed=int(inputs["seed"]),
    )
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255
