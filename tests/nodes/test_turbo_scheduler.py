"""SDTurboScheduler: the noise levels of SD-Turbo / SDXL-Turbo's distilled timesteps are
diffusers' Euler schedule at those timesteps (one step: EulerAncestral's trailing schedule, the
SD-Turbo model card's), and ComfyUI's `sdxlturbo_example` template runs end to end on a tiny
SDXL single file, giving StableDiffusionXLPipeline's one-step image."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

PACKAGE = "comfyui_workflow_templates_json"


def handle(family: Any) -> Any:
    from easel.models.handles import ModelHandle
    from easel.models.single_file import scheduler_config

    return ModelHandle("m", None, scheduler_config(family), 8, None, family=family)


@pytest.mark.parametrize(
    ("steps", "denoise", "timesteps"),
    [
        (1, 1.0, [999]),
        (4, 1.0, [999, 899, 799, 699]),
        (10, 1.0, [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]),
        (2, 0.5, [499, 399]),
        (3, 0.25, [199, 99]),  # fewer remain than asked for
    ],
)
def test_turbo_levels_are_eulers_at_the_distilled_timesteps(
    steps: int, denoise: float, timesteps: list[int]
) -> None:
    from diffusers import EulerDiscreteScheduler

    from easel.models.families import sd
    from easel.nodes.turbo_scheduler import turbo_sigmas, turbo_timesteps

    model = handle(sd.SDXL)
    assert turbo_timesteps(steps, denoise) == timesteps
    ours = turbo_sigmas(model, steps, denoise)
    euler = EulerDiscreteScheduler.from_config(model.scheduler_config)
    euler.set_timesteps(timesteps=timesteps)
    assert ours.dtype == torch.float32 and ours.ndim == 1 and float(ours[-1]) == 0.0
    assert torch.allclose(ours, euler.sigmas.float(), rtol=1e-6, atol=0)
    assert torch.allclose(euler.timesteps.float(), torch.tensor(timesteps, dtype=torch.float32))


def test_one_turbo_step_is_the_model_cards_schedule() -> None:
    """SD-Turbo's model card: EulerAncestral, timestep_spacing trailing, one step."""
    from diffusers import EulerAncestralDiscreteScheduler

    from easel.models.families import sd
    from easel.nodes.turbo_scheduler import turbo_sigmas

    model = handle(sd.SD2)
    card = EulerAncestralDiscreteScheduler.from_config(
        model.scheduler_config, timestep_spacing="trailing"
    )
    card.set_timesteps(1)
    assert card.timesteps.tolist() == [999]
    assert torch.allclose(turbo_sigmas(model, 1, 1.0), card.sigmas.float(), rtol=1e-6, atol=0)


def test_flow_models_are_refused_naming_the_input() -> None:
    from easel.core.node import NodeError
    from easel.models.families import flux
    from easel.nodes.turbo_scheduler import SDTurboScheduler

    with pytest.raises(NodeError) as caught:
        SDTurboScheduler.fn(model=handle(flux.FLUX_SCHNELL), steps=1, denoise=1.0)
    assert caught.value.input == "model" and "flow-matching" in str(caught.value)


@pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)
def test_sdxlturbo_template_equals_sdxl_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template (SDTurboScheduler 1 step, SamplerCustom euler_ancestral, cfg 1, seed 0)
    on a tiny SDXL single file under the template's file name, at 64x64: the image of
    StableDiffusionXLPipeline with EulerAncestral (trailing), one step, no CFG, from the same
    noise."""
    import os

    from diffusers import EulerAncestralDiscreteScheduler

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input
    from tests.fixtures import sd_family

    built = sd_family.build("sdxl", tmp_path)
    sd_family.write_comfy_tokenizer(tmp_path / "ComfyUI")
    models = tmp_path / "models"
    shutil.move(built.single_file, models / "checkpoints" / "sd_xl_turbo_1.0_fp16.safetensors")
    roots = [models, tmp_path / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))

    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "templates" / "sdxlturbo_example.json"
    workflow = to_easel(json.loads(path.read_text(encoding="utf-8")))
    nodes = workflow["nodes"]
    [latent] = [i for i, n in nodes.items() if n["type"] == "EmptyLatent"]
    set_input(workflow, f"{latent}.width", 64)
    set_input(workflow, f"{latent}.height", 64)
    [turbo] = [i for i, n in nodes.items() if n["type"] == "SDTurboScheduler"]
    assert (nodes[turbo]["inputs"]["steps"], nodes[turbo]["inputs"]["denoise"]) == (1, 1)
    [sampler] = [i for i, n in nodes.items() if n["type"] == "SamplerCustom"]
    inputs = nodes[sampler]["inputs"]
    assert float(inputs["cfg"]) == 1.0 and inputs["add_noise"] is True
    [decode] = [i for i, n in nodes.items() if n["type"] == "VAEDecode"]
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out", keep_values=True)
    assert result.ok, result.failures
    ours = result.values[decode]["image"]

    prompt = str(nodes[inputs["positive"][0]]["inputs"]["text"])
    pipe = built.pipe
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(
        pipe.scheduler.config, timestep_spacing="trailing"
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(1)
    sigma = float(pipe.scheduler.sigmas[0])
    # ComfyUI (and Easel) start a schedule at the model's highest level from
    # noise * sqrt(1 + sigma^2); trailing EulerAncestral's init_noise_sigma is sigma itself
    noise = torch.randn(
        (1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(int(inputs["noise_seed"]))
    )
    images = pipe(
        prompt=prompt,
        height=64,
        width=64,
        num_inference_steps=1,
        guidance_scale=0.0,
        latents=noise * (1 + sigma**2) ** 0.5 / sigma,
        output_type="np",
    ).images
    theirs = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)
    assert float(theirs.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= 1e-3
