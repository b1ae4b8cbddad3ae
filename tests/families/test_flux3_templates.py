"""ComfyUI's own Flux 3 templates (the `comfyui-workflow-templates-json` corpus, in the dev
extra) run end to end on the tiny Flux 3 models, saved under the file names the templates load:
image_flux3_klein_t2i with its prompt upsampler switched off gives the modular pipeline's image
for the template's prompt, seed and guidance (size and steps made small); with the upsampler
on, the run fails naming the upsampler file Easel does not load."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.families.test_flux3_parity import TOLERANCE
from tests.families.workflows import template
from tests.fixtures import flux3_family
from tests.fixtures.flux3_family import FILES, SIZE, TEXT_FILE, pipeline

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

flux3_models = flux3_family.flux3_models
STEPS = 2
UPSAMPLER = "qwen3.5_9b_flux3_prompt_upsampler_w4a8.safetensors"
# the file names ComfyUI's Flux 3 templates load -> the tiny models' files
TEMPLATE_FILES = {
    "diffusion_models/flux3-image-klein-base-int8-convrot.safetensors": (
        f"diffusion_models/{FILES['base']}"
    ),
    "diffusion_models/flux3-image-klein-int8-convrot.safetensors": (
        f"diffusion_models/{FILES['distilled']}"
    ),
    "text_encoders/qwen3vl_4b_int8_convrot.safetensors": f"text_encoders/{TEXT_FILE}",
    "vae/flux2-vae.safetensors": "vae/flux2-vae.safetensors",
}


@pytest.fixture(scope="module")
def template_root(flux3_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("flux3-templates")
    source = flux3_models.root
    for name, tiny in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "models" / tiny, root / "models" / name)
    shutil.copytree(source / "ComfyUI", root / "ComfyUI")
    # the upsampler's file must exist for the loader's choices; a Qwen3.5 layer's key marks it
    save_file(
        {"model.layers.0.linear_attn.in_proj_qkvz.weight": torch.zeros(4, 4)},
        str(root / "models" / "text_encoders" / UPSAMPLER),
    )
    return root


def run_template(workflow: dict[str, Any], root: Path, tmp_path: Path) -> Any:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [root / "models", root / "ComfyUI"]
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    return executor.run(workflow, output_dir=tmp_path)


def saved_image(result: Any, tmp_path: Path) -> Any:
    from PIL import Image as PILImage

    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255


PROMPT = "a red circle on a blue square"


def t2i_workflow(upsampler: bool) -> dict[str, Any]:
    """image_flux3_klein_t2i converted, small: 64 x 64, two steps, a short prompt (the tiny
    tokenizer spends a token a byte); the upsampler switch set."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    workflow = to_easel(template("image_flux3_klein_t2i"))
    nodes = workflow["nodes"]
    [latent] = [i for i, n in nodes.items() if n["type"] == "EmptyFlux2LatentImage"]
    [sampler] = [i for i, n in nodes.items() if n["type"] == "KSampler"]
    [switch] = [i for i, n in nodes.items() if n["type"] == "Switch"]
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", STEPS)
    set_input(workflow, f"{switch}.switch", upsampler)
    prompt = nodes[switch]["inputs"]["on_false"][0]
    assert nodes[prompt]["inputs"]["value"].startswith("close up profile")
    set_input(workflow, f"{prompt}.value", PROMPT)
    return workflow


def test_flux3_t2i_template_equals_the_modular_pipeline(
    template_root: Path,
    flux3_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """image_flux3_klein_t2i (subgraph, KSampler euler / simple, cfg 3.5, the empty negative,
    the user's prompt straight to Qwen3-VL) equals Flux3AutoBlocks."""
    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = t2i_workflow(upsampler=False)
    ours = saved_image(run_template(workflow, template_root, tmp_path), tmp_path)

    nodes = workflow["nodes"]
    [sampler] = [n for n in nodes.values() if n["type"] == "KSampler"]
    [switch] = [n for n in nodes.values() if n["type"] == "Switch"]
    prompt_node = switch["inputs"]["on_false"][0]
    prompt = nodes[prompt_node]["inputs"]["value"]
    cfg, seed = float(sampler["inputs"]["cfg"]), int(sampler["inputs"]["seed"])
    assert cfg == 3.5 and prompt == PROMPT
    pipe = pipeline(flux3_models, "base", guidance_scale=cfg)
    theirs = pipe(
        prompt=prompt,
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pt",
        output="images",
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255


@pytest.mark.slow
def test_flux3_upsampler_is_refused_naming_its_file(
    template_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the template's upsampler switch on, the run fails at the upsampler's loader with an
    error naming the file and what to do, not a traceback."""
    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    result = run_template(t2i_workflow(upsampler=True), template_root, tmp_path)
    assert not result.ok
    text = " ".join(str(f) for f in result.failures)
    assert UPSAMPLER in text and "prompt upsampler" in text and "Traceback" not in text


@pytest.mark.slow
def test_flux3_distilled_edit_template_equals_the_modular_pipeline(
    template_root: Path,
    flux3_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """image_flux3_klein_distilled_image_edit with its switch routing the layout caption
    (Flux3LayoutPrompt over CreateBoundingBoxes' box on the reference) straight to Qwen3-VL:
    the reference through ReferenceMultiLatent, the distilled flow map at cfg 1, equal to
    Flux3DistilledAutoBlocks given that caption and the image."""
    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input
    from tests.families.test_sd_parity import _inpaint_inputs

    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    path, picture, _ = _inpaint_inputs(tmp_path)
    workflow = to_easel(template("image_flux3_klein_distilled_image_edit"))
    nodes = workflow["nodes"]

    def only(kind: str) -> str:
        [found] = [i for i, n in nodes.items() if n["type"] == kind]
        return found

    set_input(workflow, f"{only('LoadImage')}.image", str(path))
    set_input(workflow, f"{only('ReferenceMultiLatent')}.megapixels", SIZE * SIZE / 1024**2)
    set_input(workflow, f"{only('KSampler')}.steps", STEPS)
    switch = only("Switch")
    assert nodes[switch]["inputs"]["switch"] is False  # the upsampler's answer, by default
    set_input(workflow, f"{switch}.switch", True)
    layout = only("Flux3LayoutPrompt")
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path, keep_values=True)
    ours = saved_image(result, tmp_path)

    caption = result.values[layout]["prompt"]
    assert caption.startswith("In <ref_image_0>, replace the earring <obj_1>")
    assert '"src_bbox": [' in caption and '"from": "ref_image_0"' in caption
    sampler = nodes[only("KSampler")]["inputs"]
    assert float(sampler["cfg"]) == 1.0
    theirs = pipeline(flux3_models, "distilled")(
        prompt=caption,
        image=[picture],
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        generator=torch.Generator("cpu").manual_seed(int(sampler["seed"])),
        output_type="pt",
        output="images",
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255
