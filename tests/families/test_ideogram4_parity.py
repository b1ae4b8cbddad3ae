"""Ideogram 4 from ComfyUI's split files (two transformers in ComfyUI's keys, a Qwen3-VL text
encoder in ComfyUI's keys, the Flux.2 VAE) through Easel's nodes (the template's graph:
Ideogram4Scheduler, DualModelGuider with ConditioningZeroOut's negative, CFGOverride,
SamplerCustomAdvanced) gives diffusers' Ideogram4Pipeline image (CPU fp32, tiny random weights,
max abs pixel difference 1e-3) for the same noise, schedule and per-step guidance."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from tests.families.workflows import as_tensor, image_of
from tests.fixtures import ideogram4_family
from tests.fixtures.ideogram4_family import FILES, SIZE, noise_tokens

ideogram4_models = ideogram4_family.ideogram4_models
ideogram4_manager = ideogram4_family.ideogram4_manager
run_ideogram4 = ideogram4_family.run_ideogram4

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
SEED = 42
SCHEDULER_SIZE = 256  # Ideogram4Scheduler's smallest width and height (ComfyUI's)


def workflow(*, steps: int, cfg: float, override: tuple[float, float, float] | None) -> dict:
    """ComfyUI's Ideogram 4 template graph, in Easel's node names."""
    guided = ["unet", "model"]
    nodes: dict[str, Any] = {
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": FILES["transformer"]}},
        "uncond": {"type": "DiffusionModelLoader", "inputs": {"name": FILES["unconditional"]}},
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": FILES["text_encoder"], "type": "ideogram4"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": FILES["vae"]}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "zero": {
            "type": "ConditioningZeroOut",
            "inputs": {"conditioning": ["pos", "conditioning"]},
        },
        "lat": {"type": "EmptyFlux2LatentImage", "inputs": {"width": SIZE, "height": SIZE}},
        "sigmas": {
            "type": "Ideogram4Scheduler",
            "inputs": {
                "steps": steps,
                "width": SCHEDULER_SIZE,
                "height": SCHEDULER_SIZE,
                "mu": 0.5,
                "std": 1.75,
            },
        },
        "sampler": {"type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "noise": {"type": "RandomNoise", "inputs": {"noise_seed": SEED}},
        "guider": {
            "type": "DualModelGuider",
            "inputs": {
                "model": guided,
                "positive": ["pos", "conditioning"],
                "model_negative": ["uncond", "model"],
                "negative": ["zero", "conditioning"],
                "cfg": cfg,
            },
        },
        "k": {
            "type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", "noise"],
                "guider": ["guider", "guider"],
                "sampler": ["sampler", "sampler"],
                "sigmas": ["sigmas", "sigmas"],
                "latent_image": ["lat", "latent"],
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "output"]}},
    }
    if override is not None:
        value, start, end = override
        nodes["override"] = {
            "type": "CFGOverride",
            "inputs": {"model": guided, "cfg": value, "start_percent": start, "end_percent": end},
        }
        nodes["guider"]["inputs"]["model"] = ["override", "model"]
    return nodes


def reference(pipe: Any, *, steps: int, schedule: list[float], mu: float) -> Any:
    """Ideogram4Pipeline at SIZE with the noise Easel samples from; its schedule mean follows
    the image's size where Ideogram4Scheduler's follows its inputs, so `mu` is shifted to give
    the same mean."""
    pipe.set_progress_bar_config(disable=True)
    shifted = mu + 0.5 * math.log(SCHEDULER_SIZE**2 / SIZE**2)
    out = pipe(
        prompt=PROMPT,
        height=SIZE,
        width=SIZE,
        num_inference_steps=steps,
        guidance_schedule=schedule,
        mu=shifted,
        std=1.75,
        max_sequence_length=128,
        latents=noise_tokens(SEED),
        output_type="np",
    ).images
    return as_tensor(out)


def test_template_graph_equals_ideogram4_pipeline(
    ideogram4_models: Any, run_ideogram4: Any
) -> None:
    """DualModelGuider cfg 4 with CFGOverride 2 from 70% of the schedule: the four levels are
    1.0, 0.73, 0.45, 0.20, so the last step (sigma 0.20 <= 0.3) is guided at 2, the
    pipeline's guidance_schedule [4, 4, 4, 2]."""
    ours = image_of(run_ideogram4(workflow(steps=4, cfg=4.0, override=(2.0, 0.7, 1.0)), ["dec"]))
    theirs = reference(ideogram4_models.pipe, steps=4, schedule=[4.0, 4.0, 4.0, 2.0], mu=0.5)
    assert float(ours.std()) > 0.01
    diff = (ours - theirs).abs().max().item()
    print(f"Ideogram 4 parity: max abs pixel difference {diff:.2e}")
    assert diff <= TOLERANCE


def test_ideogram4_scheduler_equals_the_pipelines_schedule() -> None:
    """Ideogram4Scheduler's levels are Ideogram4Pipeline's (its sigmas and the final 0)."""
    from diffusers.pipelines.ideogram4.pipeline_ideogram4 import (
        _logit_normal_sigmas,
        _resolution_aware_mu,
    )

    from easel.models.families.ideogram4 import sigmas

    for steps, size, mu, std in ((20, 1024, 0.0, 1.75), (48, 2048, 0.0, 1.5), (12, 768, 0.5, 1.75)):
        theirs = _logit_normal_sigmas(steps, _resolution_aware_mu(size, size, mu), std)
        ours = torch.tensor(sigmas(steps, size, size, mu, std))
        assert ours[-1] == 0.0 and len(ours) == steps + 1
        assert torch.equal(ours[:-1], theirs)


@pytest.mark.slow
def test_constant_cfg_equals_the_pipelines_guidance_scale(
    ideogram4_models: Any, run_ideogram4: Any
) -> None:
    """DualModelGuider without CFGOverride is the pipeline's constant guidance_scale."""
    ours = image_of(run_ideogram4(workflow(steps=3, cfg=3.0, override=None), ["dec"]))
    theirs = reference(ideogram4_models.pipe, steps=3, schedule=[3.0] * 3, mu=0.5)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_an_unconditional_file_without_text_projection_gives_the_same_image(
    ideogram4_models: Any, run_ideogram4: Any
) -> None:
    """An unconditional transformer file without `llm_cond_*` loads (it reads no text) and
    gives the image of the file with them: the unconditional pass never reads text."""
    from safetensors.torch import load_file, save_file

    folder = ideogram4_models.root / "models" / "diffusion_models"
    state = load_file(str(folder / FILES["unconditional"]))
    bare = {k: v for k, v in state.items() if ".llm_cond_" not in k}
    assert len(bare) < len(state)
    save_file(bare, str(folder / "ideogram4_unconditional_bare.safetensors"))
    nodes = workflow(steps=3, cfg=3.0, override=None)
    full = image_of(run_ideogram4(nodes, ["dec"]))
    nodes["uncond"]["inputs"]["name"] = "ideogram4_unconditional_bare.safetensors"
    assert (image_of(run_ideogram4(nodes, ["dec"])) - full).abs().max().item() <= 1e-6
    # as the guided model it is refused, naming the input
    nodes["guider"]["inputs"]["model"] = ["uncond", "model"]
    result = run_ideogram4(nodes, ["dec"])
    [failure] = result.failures
    assert failure.node == "guider" and failure.input == "model"
    assert "reads no text" in failure.message


@pytest.mark.slow
def test_cfg_override_outside_dual_model_guider_is_refused(run_ideogram4: Any) -> None:
    """CFGOverride is applied by DualModelGuider: the model sampled through CFGGuider is
    refused naming the guider (not silently sampled without the override)."""
    nodes = workflow(steps=2, cfg=3.0, override=(2.0, 0.7, 1.0))
    nodes["guider"] = {
        "type": "CFGGuider",
        "inputs": {
            "model": ["override", "model"],
            "positive": ["pos", "conditioning"],
            "negative": ["zero", "conditioning"],
            "cfg": 3.0,
        },
    }
    result = run_ideogram4(nodes, ["dec"])
    failures = [f for f in result.failures if f.node == "k"]
    assert failures and failures[0].input == "guider"
    assert "DualModelGuider" in failures[0].message
