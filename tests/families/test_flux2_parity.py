"""Flux.2 from ComfyUI's split files (diffusion model in Black Forest Labs' keys, a Mistral or
Qwen3 text encoder file, the Flux.2 VAE in its original keys) through Easel's nodes gives
diffusers' Flux2Pipeline / Flux2KleinPipeline image (CPU fp32, tiny random weights, max abs
pixel difference 1e-3), with the same text embeddings and the same noise levels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.fixtures import flux2_family
from tests.fixtures.flux2_family import SIZE

flux2_root = flux2_family.flux2_root
flux2_models = flux2_family.flux2_models
flux2_manager = flux2_family.flux2_manager
flux2_env = flux2_family.flux2_env
run_flux2 = flux2_family.run_flux2

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
FILES = {
    "dev": ("flux2-dev-tiny.safetensors", "mistral-tiny.safetensors"),
    "klein": ("flux-2-klein-tiny.safetensors", "qwen3-tiny.safetensors"),
}


def workflow(variant: str, *, steps: int = 3, cfg: float = 1.0) -> dict[str, Any]:
    """ComfyUI's Flux.2 shape with KSampler: UNETLoader, CLIPLoader type flux2, VAELoader,
    CLIPTextEncode, EmptyFlux2LatentImage, KSampler (euler, simple), VAEDecode."""
    unet, text = FILES[variant]
    return {
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": unet}},
        "clip": {"type": "TextEncoderLoader", "inputs": {"name": text, "type": "flux2"}},
        "vae": {"type": "VAELoader", "inputs": {"name": "flux2-vae.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": ""}},
        "lat": {"type": "EmptyFlux2LatentImage", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }


def image_of(result: Any, node: str = "dec") -> Any:
    assert result.status == "succeeded", result.failures
    return result.values[node]["image"]


def comfy_shift_pipe(pipe: Any) -> Any:
    """`pipe` with the fixed exponential shift KSampler applies to Flux.2 (ComfyUI's mu 2.02):
    the pipeline always computes its empirical mu, and a scheduler without dynamic shifting
    applies the equal fixed shift e^mu instead (the same noise levels)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from easel.models.families.flux2 import COMFY_SHIFT_MU

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        pipe.scheduler.config, use_dynamic_shifting=False, shift=math.exp(COMFY_SHIFT_MU)
    )
    return type(pipe)(**{**pipe.components, "scheduler": scheduler})


def reference(pipe: Any, **kwargs: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        height=SIZE,
        width=SIZE,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="pt",
        **kwargs,
    ).images


def test_flux2_dev_split_files_equal_flux2_pipeline(flux2_models: Any, run_flux2: Any) -> None:
    """dev (guidance embedded, FluxGuidance) through KSampler equals Flux2Pipeline."""
    nodes = workflow("dev")
    nodes["g"] = {
        "type": "FluxGuidance",
        "inputs": {"conditioning": ["pos", "conditioning"], "guidance": 2.5},
    }
    nodes["k"]["inputs"]["positive"] = ["g", "conditioning"]
    ours = image_of(run_flux2(nodes, ["dec"]))
    pipe = comfy_shift_pipe(flux2_models["dev"].pipe)
    theirs = reference(pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=2.5)
    other = reference(pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=6.0)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (theirs - other).abs().max().item() > 10 * TOLERANCE  # guidance is seen


def test_flux2_klein_true_cfg_equals_flux2_klein_pipeline(
    flux2_models: Any, run_flux2: Any
) -> None:
    """Klein (no guidance embedding) with cfg 4 and the empty negative equals
    Flux2KleinPipeline's classifier-free guidance."""
    ours = image_of(run_flux2(workflow("klein", cfg=4.0), ["dec"]))
    pipe = comfy_shift_pipe(flux2_models["klein"].pipe)
    theirs = reference(pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=4.0)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_reference_image_equals_flux2_pipeline_edit(
    flux2_models: Any, run_flux2: Any, tmp_path: Path
) -> None:
    """A reference image (LoadImage -> VAEEncode -> ReferenceLatent) equals Flux2Pipeline's
    `image` input (reference tokens at t = 10); without it the image is another."""
    from tests.families.test_sd_parity import _inpaint_inputs

    path, picture, _ = _inpaint_inputs(tmp_path)
    nodes = workflow("dev")
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(path)}}
    nodes["enc"] = {
        "type": "VAEEncode",
        "inputs": {"vae": ["vae", "vae"], "image": ["img", "image"]},
    }
    nodes["ref"] = {
        "type": "ReferenceLatent",
        "inputs": {"conditioning": ["pos", "conditioning"], "latent": ["enc", "latent"]},
    }
    nodes["k"]["inputs"]["positive"] = ["ref", "conditioning"]
    ours = image_of(run_flux2(nodes, ["dec"]))
    pipe = comfy_shift_pipe(flux2_models["dev"].pipe)
    theirs = reference(pipe, prompt=PROMPT, image=[picture], num_inference_steps=3)
    plain = image_of(run_flux2(workflow("dev"), ["dec"]))
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (ours - plain).abs().max().item() > TOLERANCE  # the reference is seen


@pytest.mark.parametrize("variant", ["dev", "klein"])
def test_text_embeddings_equal_the_pipelines(
    variant: str, flux2_models: Any, flux2_manager: Any, flux2_env: Path
) -> None:
    """CLIPLoader type flux2 + TextEncode gives the pipeline's prompt embeddings: the chat
    format, 512 tokens with a mask, hidden layers (10, 20, 30) or (9, 18, 27) stacked."""
    from easel.models import family_files
    from easel.models.text import encode_text

    path = flux2_models[variant].text_encoder_file
    clip = family_files.load_clip("flux2", path.name, [path], flux2_manager)
    ours = encode_text(clip, PROMPT).conditioning["embeds"]
    theirs, _ = flux2_models[variant].pipe.encode_prompt(PROMPT, device="cpu")
    assert ours.shape == theirs.shape == (1, 512, 3 * flux2_family.TEXT_WIDTH)
    assert (ours - theirs).abs().max().item() <= 1e-5
    assert clip.family.name == f"flux2-{variant}"


def test_system_message_is_the_pipelines() -> None:
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE

    from easel.models.flux2_text import SYSTEM_MESSAGE as OURS

    assert OURS == SYSTEM_MESSAGE


@pytest.mark.parametrize("steps,width,height", [(4, 1024, 1024), (20, 768, 1344), (50, 2048, 2048)])
def test_flux2_scheduler_sigmas_equal_the_pipelines(steps: int, width: int, height: int) -> None:
    """Flux2Scheduler's levels are the pipeline's (linspace sigmas, its empirical mu for the
    image's tokens and the step count), ending in 0, as a 1-D float32 CPU tensor."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

    from easel.models.families.flux2 import SCHEDULER
    from easel.nodes.flux2 import flux2_sigmas

    config = {k: v for k, v in SCHEDULER.items() if not k.startswith("_") and k != "mu"}
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    tokens = (height // 16) * (width // 16)
    scheduler.set_timesteps(
        sigmas=np.linspace(1.0, 1 / steps, steps), mu=compute_empirical_mu(tokens, steps)
    )
    ours = flux2_sigmas(steps, width, height)
    assert ours.dtype == torch.float32 and ours.dim() == 1 and ours.device.type == "cpu"
    assert len(ours) == steps + 1 and float(ours[-1]) == 0.0 and float(ours[0]) == 1.0
    assert (ours - scheduler.sigmas.float()).abs().max().item() <= 1e-6


def test_flux_kv_cache_equals_flux2_klein_kv_pipeline(
    flux2_models: Any, run_flux2: Any, tmp_path: Path
) -> None:
    """FluxKVCache on Klein with a reference image equals diffusers' Flux2KleinKVPipeline
    (references run once at timestep 0, their keys and values reused), which differs from
    running the references at every step."""
    from diffusers import Flux2KleinKVPipeline

    from tests.families.test_sd_parity import _inpaint_inputs

    path, picture, _ = _inpaint_inputs(tmp_path)
    nodes = workflow("klein")
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(path)}}
    nodes["enc"] = {
        "type": "VAEEncode",
        "inputs": {"vae": ["vae", "vae"], "image": ["img", "image"]},
    }
    nodes["ref"] = {
        "type": "ReferenceLatent",
        "inputs": {"conditioning": ["pos", "conditioning"], "latent": ["enc", "latent"]},
    }
    nodes["k"]["inputs"]["positive"] = ["ref", "conditioning"]
    every_step = image_of(run_flux2(nodes, ["dec"]))
    nodes["kv"] = {"type": "FluxKVCache", "inputs": {"model": ["unet", "model"]}}
    nodes["k"]["inputs"]["model"] = ["kv", "model"]
    ours = image_of(run_flux2(nodes, ["dec"]))
    klein = flux2_models["klein"].pipe
    pipe = comfy_shift_pipe(Flux2KleinKVPipeline(**klein.components, is_distilled=True))
    theirs = reference(pipe, prompt=PROMPT, image=[picture], num_inference_steps=3)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    # tiny random weights see references faintly: a difference far above float rounding
    assert (ours - every_step).abs().max().item() > 1e-4
