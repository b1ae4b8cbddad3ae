"""ComfyUI's own Ovis-Image template (`image_ovis_text_to_image` of the
`comfyui-workflow-templates-json` corpus, in the dev extra: a subgraph of UNETLoader, CLIPLoader
type ovis, VAELoader, ModelSamplingAuraFlow, KSampler at cfg 5 with an empty negative) runs end
to end on the tiny Ovis-Image models, saved under the file names the template loads, and gives
OvisImagePipeline's image for the template's prompts, seed, cfg and shift. Size and steps are
made small."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_ovis_parity import TOLERANCE
from tests.families.workflows import as_tensor, only, run_for_image, stage_template_files, template
from tests.fixtures import ovis_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

ovis_models = ovis_family.ovis_models
SIZE = 64
STEPS = 2
TEMPLATE_FILES = {
    "diffusion_models/ovis_image_bf16.safetensors": ovis_family.FILES["transformer"],
    "text_encoders/ovis_2.5.safetensors": ovis_family.FILES["text_encoder"],
    "vae/ae.safetensors": ovis_family.FILES["vae"],
}


def test_ovis_template_runs_and_equals_ovis_image_pipeline(
    ovis_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    from diffusers import FlowMatchEulerDiscreteScheduler

    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    roots = stage_template_files(ovis_models.root, TEMPLATE_FILES, tmp_path / "root", monkeypatch)

    workflow = to_easel(template("image_ovis_text_to_image"))
    nodes = workflow["nodes"]
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", STEPS)
    ours = run_for_image(workflow, roots, tmp_path / "out")

    inputs = nodes[sampler]["inputs"]
    prompt = {side: nodes[inputs[side][0]]["inputs"]["text"] for side in ("positive", "negative")}
    shift = float(nodes[only(nodes, "ModelSamplingAuraFlow")]["inputs"]["shift"])
    cfg = float(inputs["cfg"])
    assert cfg > 1
    pipe = ovis_models.pipe
    original = pipe.scheduler
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        original.config, shift=shift, use_dynamic_shifting=False
    )
    try:
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            out = pipe(
                prompt=prompt["positive"],
                negative_prompt=prompt["negative"],
                height=SIZE,
                width=SIZE,
                num_inference_steps=STEPS,
                guidance_scale=cfg,
                generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
                output_type="np",
            ).images
    finally:
        pipe.scheduler = original
    theirs = as_tensor(out)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
