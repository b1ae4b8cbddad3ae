"""ComfyUI's own Kandinsky 5 template (`image_kandinsky5_t2i` of the
`comfyui-workflow-templates-json` corpus: a subgraph of UNETLoader, DualCLIPLoader type
kandinsky5_image, VAELoader, ModelSamplingSD3, CLIPTextEncode x2, EmptyLatentImage, KSampler
euler / simple at cfg 3.5) runs end to end on the tiny Kandinsky 5 models, saved under the file
names the template loads, and gives Kandinsky5T2IPipeline's image for the template's prompts,
seed, cfg and shift, with ComfyUI's "simple" sigmas (linspace(1, 1/n, n), then the shift) given
to the pipeline's scheduler. Size and steps are made small."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_kandinsky5_parity import TOLERANCE
from tests.families.workflows import as_tensor, only, run_for_image, stage_template_files, template
from tests.fixtures import kandinsky5_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

kandinsky5_models = kandinsky5_family.kandinsky5_models
SIZE = 64
STEPS = 2
TEMPLATE_FILES = {
    "diffusion_models/kandinsky5lite_t2i.safetensors": kandinsky5_family.FILES["transformer"],
    "text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors": kandinsky5_family.FILES["qwen"],
    "text_encoders/clip_l.safetensors": kandinsky5_family.FILES["clip_l"],
    "vae/ae.safetensors": kandinsky5_family.FILES["vae"],
}


def test_kandinsky5_template_runs_and_equals_kandinsky5_t2i_pipeline(
    kandinsky5_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    from easel.comfy.convert import to_easel
    from easel.models.families.kandinsky5 import PROMPT_TEMPLATE
    from easel.models.qwen_text import template_tokens
    from easel.workflow_edit import set_input

    roots = stage_template_files(
        kandinsky5_models.root, TEMPLATE_FILES, tmp_path / "root", monkeypatch
    )

    workflow = to_easel(template("image_kandinsky5_t2i"))
    nodes = workflow["nodes"]
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", STEPS)
    ours = run_for_image(workflow, roots, tmp_path / "out")

    inputs = nodes[sampler]["inputs"]
    prompt = {side: nodes[inputs[side][0]]["inputs"]["text"] for side in ("positive", "negative")}
    shift = float(nodes[only(nodes, "ModelSamplingSD3")]["inputs"]["shift"])
    cfg = float(inputs["cfg"])
    assert cfg > 1 and inputs["scheduler"] == "simple"
    pipe = kandinsky5_models.pipe
    original = pipe.scheduler
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        original.config, shift=shift, use_dynamic_shifting=False
    )
    own = scheduler.set_timesteps
    scheduler.set_timesteps = lambda steps, device=None: own(  # type: ignore[method-assign]
        device=device, sigmas=np.linspace(1.0, 1 / steps, steps)
    )
    pipe.scheduler = scheduler
    pipe.resolutions = [(SIZE, SIZE)]
    pipe.prompt_template_encode_start_idx = template_tokens(
        pipe.tokenizer.tokenizer, PROMPT_TEMPLATE
    )
    noise = torch.randn(
        (1, 16, SIZE // 8, SIZE // 8),
        generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
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
                latents=noise.permute(0, 2, 3, 1).unsqueeze(1),
                output_type="np",
            ).image
    finally:
        pipe.scheduler = original
    theirs = as_tensor(out)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
