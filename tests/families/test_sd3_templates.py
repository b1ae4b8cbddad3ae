"""ComfyUI's own SD3.5 template (`sd3.5_simple_example` of the `comfyui-workflow-templates-json`
corpus, in the dev extra) runs end to end on the tiny SD3.5 Large single file, saved under the
file name the template loads, and gives StableDiffusion3Pipeline's image for the template's
prompts, seed, cfg and sampler (size and steps made small)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.families.workflows import as_tensor, template
from tests.fixtures import sd3_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

sd3_root = sd3_family.sd3_root
sd3_models = sd3_family.sd3_models
SIZE, STEPS = 64, 2
TOLERANCE = 1e-3


def test_sd35_simple_example_runs_and_equals_sd3_pipeline(
    sd3_models: Any, sd3_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    shutil.copyfile(
        sd3_root / "models" / "checkpoints" / "sd3.5_large.safetensors",
        models / "checkpoints" / "sd3.5_large_fp8_scaled.safetensors",
    )
    roots = [models, sd3_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("sd3.5_simple_example"))
    nodes = workflow["nodes"]
    [latent] = [i for i, n in nodes.items() if n["type"] == "EmptyLatent"]
    [sampler] = [i for i, n in nodes.items() if n["type"] == "KSampler"]
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", STEPS)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "output")
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / "output" / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    inputs = nodes[sampler]["inputs"]
    assert (inputs["sampler_name"], inputs["scheduler"]) == ("euler", "sgm_uniform")

    def text_of(link: list[Any]) -> str:
        return str(nodes[link[0]]["inputs"]["text"])

    prompt, negative = text_of(inputs["positive"]), text_of(inputs["negative"])
    assert prompt and not negative
    pipe = sd3_models["large"].pipe
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=prompt,
            negative_prompt=negative,
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            sigmas=list(np.linspace(1.0, 1 / STEPS, STEPS)),  # sgm_uniform on a flow model
            guidance_scale=float(inputs["cfg"]),
            max_sequence_length=77,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
        ).images
    )
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255
