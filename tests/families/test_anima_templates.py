"""ComfyUI's own Anima template (`image_anima_base_v1` of the `comfyui-workflow-templates-json`
corpus, in the dev extra: a subgraph of UNETLoader, CLIPLoader type stable_diffusion with
qwen_3_06b_base, VAELoader, ComfySwitchNodes choosing between plain sampling and a turbo LoRA,
KSampler euler / simple) runs end to end on the tiny Anima models, saved under the file names
the template loads, and gives diffusers' Anima pipeline image for the template's prompts, seed
and cfg. Size and steps are made small."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_anima_parity import TOLERANCE
from tests.families.workflows import as_tensor, only, run_for_image, stage_template_files, template
from tests.fixtures import anima_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

anima_models = anima_family.anima_models
SIZE = 64
STEPS = 2
TEMPLATE_FILES = {
    "diffusion_models/anima-base-v1.0.safetensors": anima_family.FILES["transformer"],
    "text_encoders/qwen_3_06b_base.safetensors": anima_family.FILES["text_encoder"],
    "vae/qwen_image_vae.safetensors": anima_family.FILES["vae"],
    "loras/anima-turbo-lora-v0.2.safetensors": anima_family.FILES["lora"],
}


def reference(built: Any, nodes: dict[str, Any], sampler: str, cfg: float) -> Any:
    inputs = nodes[sampler]["inputs"]
    prompt = {side: nodes[inputs[side][0]]["inputs"]["text"] for side in ("positive", "negative")}
    pipe = anima_family.pipeline(built, cfg)
    with torch.no_grad():
        state = pipe(
            prompt=prompt["positive"],
            negative_prompt=prompt["negative"],
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
        )
    return as_tensor(state.values["images"])


def test_anima_template_runs_and_equals_the_anima_pipeline(
    anima_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    roots = stage_template_files(anima_models.root, TEMPLATE_FILES, tmp_path / "root", monkeypatch)
    workflow = to_easel(template("image_anima_base_v1"))
    nodes = workflow["nodes"]
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    # the turbo switch is off: the steps are the plain branch's Int, the cfg its Float
    steps_switch = nodes[nodes[sampler]["inputs"]["steps"][0]]["inputs"]
    cfg_switch = nodes[nodes[sampler]["inputs"]["cfg"][0]]["inputs"]
    set_input(workflow, f"{steps_switch['on_false'][0]}.value", STEPS)
    cfg = float(nodes[cfg_switch["on_false"][0]]["inputs"]["value"])
    assert cfg > 1
    ours = run_for_image(workflow, roots, tmp_path / "out")

    theirs = reference(anima_models, nodes, sampler, cfg)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


def test_anima_preview_template_runs_with_er_sde(
    anima_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """image_anima_preview samples with er_sde (Easel's FlowERSDEScheduler, checked in
    tests/models/test_flow_samplers.py): the template runs, and the same seed gives the same
    image again."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    files = {
        **TEMPLATE_FILES,
        "diffusion_models/anima-preview3-base.safetensors": anima_family.FILES["transformer"],
    }
    roots = stage_template_files(anima_models.root, files, tmp_path / "root", monkeypatch)
    workflow = to_easel(template("image_anima_preview"))
    nodes = workflow["nodes"]
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    assert nodes[sampler]["inputs"]["sampler_name"] == "er_sde"
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", 3)
    first = run_for_image(workflow, roots, tmp_path / "out")
    again = run_for_image(workflow, roots, tmp_path / "again")
    assert first.shape == (1, 3, SIZE, SIZE)
    assert torch.isfinite(first).all() and float(first.std()) > 0.01
    assert torch.equal(first, again)
