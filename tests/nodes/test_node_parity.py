"""The Easel text-to-image workflow yields the diffusers StableDiffusionPipeline's image."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.fixtures.tiny_models import TinyModels
from tests.nodes.workflows import SIZE, txt2img


@pytest.mark.parametrize(
    ("sampler", "scheduler_class"),
    [
        ("euler", "EulerDiscreteScheduler"),
        ("euler_ancestral", "EulerAncestralDiscreteScheduler"),
        ("dpmpp_2m", "DPMSolverMultistepScheduler"),
    ],
)
def test_matches_stable_diffusion_pipeline(
    run_workflow: Any, tiny_models: TinyModels, sampler: str, scheduler_class: str
) -> None:
    import diffusers
    from diffusers import StableDiffusionPipeline

    result = run_workflow(txt2img(sampler_name=sampler, steps=3), ["dec"])
    assert result.status == "succeeded", result.failures
    ours = result.values["dec"]["image"]

    pipe = StableDiffusionPipeline.from_pretrained(
        str(tiny_models.bundle), local_files_only=True, safety_checker=None
    )
    cls = getattr(diffusers, scheduler_class)
    extra = {"algorithm_type": "dpmsolver++", "solver_order": 2} if sampler == "dpmpp_2m" else {}
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **extra)
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(
        "a red circle",
        negative_prompt="blue",
        height=SIZE,
        width=SIZE,
        num_inference_steps=3,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
    ).images
    reference = torch.from_numpy(reference).permute(0, 3, 1, 2)
    assert ours.shape == reference.shape == (1, 3, SIZE, SIZE)
    assert ours.dtype == torch.float32 and ours.min() >= 0 and ours.max() <= 1
    assert float(ours.std()) > 0.01  # a real image, not a constant
    assert (ours - reference).abs().max().item() <= 1e-3
