"""ComfyUI's own Flux templates (the `comfyui-workflow-templates-json` corpus, in the dev extra)
run end to end on the tiny Flux models, saved under the file names the templates use, and give
FluxPipeline's image for the template's prompt, seed and sampler (sizes and steps made small)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_flux_parity import TOLERANCE
from tests.families.workflows import as_tensor, template
from tests.fixtures import flux_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

flux_root = flux_family.flux_root
flux_models = flux_family.flux_models
SIZE = 64
# the file names ComfyUI's Flux templates load
TEMPLATE_FILES = {
    "diffusion_models/flux1-dev.safetensors": "diffusion_models/flux-dev.safetensors",
    "diffusion_models/flux1-schnell.safetensors": "diffusion_models/flux-schnell.safetensors",
    "text_encoders/clip_l.safetensors": "text_encoders/clip_l.safetensors",
    "text_encoders/t5xxl_fp16.safetensors": "text_encoders/t5xxl.safetensors",
    "vae/ae.safetensors": "vae/ae.safetensors",
    "diffusion_models/flux1-dev-kontext_fp8_scaled.safetensors": (
        "diffusion_models/flux-dev.safetensors"
    ),
    "text_encoders/t5xxl_fp8_e4m3fn_scaled.safetensors": "text_encoders/t5xxl.safetensors",
}


@pytest.fixture(scope="module")
def template_root(
    flux_models: Any, flux_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("flux-templates")
    for name, source in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flux_root / "models" / source, root / "models" / name)
    shutil.copytree(flux_root / "ComfyUI", root / "ComfyUI")
    return root


@pytest.mark.parametrize(
    "name,variant,steps",
    [
        ("flux_dev_full_text_to_image", "dev", 2),
        ("flux_schnell_full_text_to_image", "schnell", 2),
    ],
)
def test_flux_template_runs_and_equals_flux_pipeline(
    name: str,
    variant: str,
    steps: int,
    template_root: Path,
    flux_models: Any,
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
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", steps)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    inputs = nodes[sampler]["inputs"]
    [encoder] = [n for n in nodes.values() if n["type"] in ("TextEncode", "TextEncodeFlux")]
    text = encoder["inputs"]
    prompt = text.get("text", text.get("clip_l"))
    prompt_2 = text.get("text", text.get("t5xxl"))
    pipe = flux_models[variant].pipe
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=prompt,
            prompt_2=prompt_2,
            height=SIZE,
            width=SIZE,
            num_inference_steps=steps,
            guidance_scale=float(text.get("guidance", 3.5)),
            max_sequence_length=256,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
        ).images
    )
    assert (inputs["sampler_name"], inputs["scheduler"], inputs["cfg"]) == ("euler", "simple", 1)
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255


def test_flux_kontext_template_runs(
    template_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's Kontext template (LoadImage -> ImageStitch -> FluxKontextImageScale ->
    VAEEncode -> ReferenceLatent -> FluxGuidance -> KSampler) runs on the tiny models; its
    input image is scaled to Kontext's resolutions, so the result is that size."""
    import os

    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("flux_kontext_dev_basic"))
    nodes = workflow["nodes"]
    [loader] = [n for n in nodes.values() if n["type"] == "LoadImage"]
    (tmp_path / "input").mkdir()
    PILImage.new("RGB", (48, 32), (200, 40, 90)).save(
        tmp_path / "input" / loader["inputs"]["image"]
    )
    [sampler] = [i for i, n in nodes.items() if n["type"] == "KSampler"]
    set_input(workflow, f"{sampler}.steps", 1)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(
        load_plugins(entry_points=False),
        services={"models": manager, "input_dir": tmp_path / "input"},
    )
    result = executor.run(workflow, output_dir=tmp_path / "output")
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    width, height = PILImage.open(tmp_path / "output" / saved).size
    assert width > height and width % 16 == 0 and height % 16 == 0  # a 3:2 Kontext size
