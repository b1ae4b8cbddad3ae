"""ComfyUI's own Z-Image templates (the `comfyui-workflow-templates-json` corpus, in the dev
extra) convert and run end to end on the tiny Z-Image models, saved under the file names the
templates use, and give ZImagePipeline's image for the template's prompt, seed and guidance
(sizes and steps made small; the templates' `res_multistep` sampler is swapped for `euler`,
the sampler the pipeline has)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_zimage_parity import TOLERANCE
from tests.families.workflows import as_tensor, template
from tests.fixtures import lumina_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

lumina_root = lumina_family.lumina_root
lumina_models = lumina_family.lumina_models
SIZE = 64
# the file names ComfyUI's Z-Image templates load, and the tiny files standing in for them
TEMPLATE_FILES = {
    "diffusion_models/z_image_turbo_bf16.safetensors": "diffusion_models/z_image_turbo_bf16",
    "diffusion_models/z_image_bf16.safetensors": "diffusion_models/z_image_turbo_bf16",
    "text_encoders/qwen_3_4b.safetensors": "text_encoders/qwen_3_4b",
    "vae/ae.safetensors": "vae/ae",
}


@pytest.fixture(scope="module")
def template_root(
    lumina_models: Any, lumina_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("zimage-templates")
    for name, source in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lumina_root / "models" / f"{source}.safetensors", root / "models" / name)
    shutil.copytree(lumina_root / "ComfyUI", root / "ComfyUI")
    return root


@pytest.mark.parametrize(
    "name,steps",
    [("image_z_image_turbo", 2), ("image_z_image", 2)],
)
def test_zimage_template_runs_and_equals_zimage_pipeline(
    name: str,
    steps: int,
    template_root: Path,
    lumina_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
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
    workflow = to_easel(template(name))
    nodes = workflow["nodes"]
    [latent] = [i for i, n in nodes.items() if n["type"] == "EmptyLatent"]
    [sampler] = [i for i, n in nodes.items() if n["type"] == "KSampler"]
    [shift] = [n for n in nodes.values() if n["type"] == "ModelSamplingAuraFlow"]
    inputs = nodes[sampler]["inputs"]
    assert (inputs["sampler_name"], inputs["scheduler"]) == ("res_multistep", "simple")
    assert shift["inputs"]["shift"] == 3  # Z-Image's own shift (its scheduler config's)
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", steps)
    set_input(workflow, f"{sampler}.sampler_name", "euler")
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    prompt = nodes[inputs["positive"][0]]["inputs"]["text"]
    cfg = float(inputs["cfg"])
    kwargs: dict[str, Any] = {"guidance_scale": cfg - 1.0}  # the pipeline's pos + g (pos - neg)
    if cfg > 1.0:
        kwargs["negative_prompt"] = nodes[inputs["negative"][0]]["inputs"]["text"]
    pipe = lumina_models["z-image"].pipe
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=prompt,
            height=SIZE,
            width=SIZE,
            num_inference_steps=steps,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
            **kwargs,
        ).images
    )
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255
