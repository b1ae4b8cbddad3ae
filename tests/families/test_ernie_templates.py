"""ComfyUI's own ERNIE-Image templates (the `comfyui-workflow-templates-json` corpus, in the dev
extra) run end to end on the tiny ERNIE-Image models, saved under the file names the templates
load, and give ErnieImagePipeline's image for the template's prompt, seed, sampler and cfg
(size and steps made small; the templates' prompt enhancement, a TextGenerate on the prompt
enhancer, switched off with its own Boolean so that the prompt is the template's). The
Ministral-3-3B file comes through CLIPLoader type flux2, as the templates load it."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_ernie_parity import TOLERANCE
from tests.families.workflows import as_tensor, only, template
from tests.fixtures import ernie_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

ernie_models = ernie_family.ernie_models
SIZE = 64
STEPS = 2
# the file names ComfyUI's ERNIE-Image templates load, and the tiny files standing in for them
TEMPLATE_FILES = {
    "diffusion_models/ernie-image.safetensors": "diffusion_models/ernie-image",
    "diffusion_models/ernie-image-turbo.safetensors": "diffusion_models/ernie-image",
    "text_encoders/ministral-3-3b.safetensors": "text_encoders/ministral-3-3b",
    # the prompt enhancer the switched-off TextGenerate would read: present, never loaded
    "text_encoders/ernie-image-prompt-enhancer.safetensors": "text_encoders/ministral-3-3b",
    "vae/flux2-vae.safetensors": "vae/flux2-vae",
}


@pytest.fixture(scope="module")
def template_root(ernie_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ernie-templates")
    for name, tiny in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(
            ernie_models.root / "models" / f"{tiny}.safetensors", root / "models" / name
        )
    return root


@pytest.mark.parametrize("name,cfg", [("image_ernie_image_turbo", 1.0), ("image_ernie_image", 4.0)])
def test_ernie_template_runs_and_equals_ernie_pipeline(
    name: str,
    cfg: float,
    template_root: Path,
    ernie_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    monkeypatch.setenv("EASEL_MODELS_DIR", str(template_root / "models"))
    workflow = to_easel(template(name))
    nodes = workflow["nodes"]
    latent, sampler = only(nodes, "EmptyFlux2LatentImage"), only(nodes, "KSampler")
    inputs = nodes[sampler]["inputs"]
    assert (inputs["sampler_name"], inputs["scheduler"], inputs["cfg"]) == ("euler", "simple", cfg)
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", STEPS)
    generate = only(nodes, "TextGenerate")
    [switch] = [
        n for n in nodes.values() if n["inputs"].get("on_true") == [generate, "generated_text"]
    ]
    set_input(workflow, f"{switch['inputs']['switch'][0]}.value", False)
    user = nodes[switch["inputs"]["on_false"][0]]["inputs"]["value"]
    manager = ModelManager([template_root / "models"], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    kwargs: dict[str, Any] = {"guidance_scale": cfg}
    if cfg > 1.0:  # the template's negative: an empty CLIPTextEncode
        negative = nodes[inputs["negative"][0]]
        assert negative["type"] == "TextEncode" and negative["inputs"]["text"] == ""
        kwargs["negative_prompt"] = ""
    theirs = as_tensor(
        ernie_models.pipe(
            prompt=user,
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
            **kwargs,
        ).images
    )
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
