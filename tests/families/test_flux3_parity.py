"""Flux 3 from ComfyUI's split files (diffusion model in Black Forest Labs' keys, the Qwen3-VL
file, the Flux.2 VAE in its original keys) through Easel's nodes gives diffusers' Flux 3
modular pipeline's image (CPU fp32, tiny random weights, max abs pixel difference 1e-3), with
the same text embeddings and the same noise levels: the base model with classifier-free
guidance (the default run), the step-distilled flow map and reference images (slow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures import flux3_family
from tests.fixtures.flux3_family import FILES, SIZE, TEXT_FILE, pipeline

flux3_models = flux3_family.flux3_models
flux3_manager = flux3_family.flux3_manager
flux3_env = flux3_family.flux3_env
run_flux3 = flux3_family.run_flux3

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"


def workflow(variant: str, *, steps: int = 3, cfg: float = 3.5) -> dict[str, Any]:
    """ComfyUI's Flux 3 shape with KSampler: UNETLoader, CLIPLoader type flux3, VAELoader,
    CLIPTextEncode (prompt and the empty negative), EmptyFlux2LatentImage, KSampler (euler,
    simple), VAEDecode."""
    return {
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": FILES[variant]}},
        "clip": {"type": "TextEncoderLoader", "inputs": {"name": TEXT_FILE, "type": "flux3"}},
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


def reference(pipe: Any, **kwargs: Any) -> Any:
    """The pipeline's image [1, 3, H, W] in 0..1."""
    return pipe(
        height=kwargs.pop("height", SIZE),
        width=kwargs.pop("width", SIZE),
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="pt",
        output="images",
        **kwargs,
    )


def test_flux3_base_split_files_equal_the_modular_pipeline(
    flux3_models: Any, run_flux3: Any
) -> None:
    """The base model through KSampler (cfg 3.5, the empty negative) equals Flux3AutoBlocks
    (ClassifierFreeGuidance 3.5, shift 6.93, the same three noise levels)."""
    ours = image_of(run_flux3(workflow("base"), ["dec"]))
    pipe = pipeline(flux3_models, "base", guidance_scale=3.5)
    theirs = reference(pipe, prompt=PROMPT, num_inference_steps=3)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_flux3_distilled_flow_map_equals_the_distilled_pipeline(
    flux3_models: Any, run_flux3: Any
) -> None:
    """The step-distilled model (cfg 1: no negative) gets each step's target timestep as
    Flux3DistilledAutoBlocks gives it; the next level matters (a wrong one changes the image)."""
    ours = image_of(run_flux3(workflow("distilled", cfg=1.0), ["dec"]))
    theirs = reference(pipeline(flux3_models, "distilled"), prompt=PROMPT, num_inference_steps=3)
    other = reference(pipeline(flux3_models, "distilled"), prompt=PROMPT, num_inference_steps=4)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (ours - other).abs().max().item() > 10 * TOLERANCE


@pytest.mark.slow
def test_text_embeddings_equal_the_pipelines(
    flux3_models: Any, flux3_manager: Any, flux3_env: Path
) -> None:
    """CLIPLoader type flux3 + TextEncode gives Flux3TextEncoderStep's embeddings: the chat
    format, padded to 80 tokens, layers 4, 8, ..., 32 stacked."""
    from diffusers.modular_pipelines.flux3.encoders import Flux3TextEncoderStep

    from easel.models import family_files
    from easel.models.text import encode_text

    path = flux3_env / "models" / "text_encoders" / TEXT_FILE
    clip = family_files.load_clip("flux3", path.name, [path], flux3_manager)
    for prompt in (PROMPT, ""):
        ours = encode_text(clip, prompt).conditioning["embeds"]
        theirs = Flux3TextEncoderStep._get_qwen3_vl_prompt_embeds(
            flux3_models.text_encoder, flux3_models.processor, prompt, device="cpu"
        )
        assert ours.shape == theirs.shape == (1, 80, 8 * flux3_family.TEXT_WIDTH)
        assert (ours - theirs).abs().max().item() <= 1e-5
    assert clip.family.name == "flux3"


@pytest.mark.slow
def test_reference_images_equal_the_pipelines_edit(
    flux3_models: Any, run_flux3: Any, tmp_path: Path
) -> None:
    """Two reference images through ReferenceMultiLatent (on both guidance sides, its empty
    latent sampled) equal the modular pipeline's `image` list (reference tokens at l = -1,
    -2); the references are seen, and in their order."""
    from PIL import ImageOps

    from tests.families.test_sd_parity import _inpaint_inputs

    path, picture, _ = _inpaint_inputs(tmp_path)
    flipped = ImageOps.mirror(picture)
    flipped_path = tmp_path / "flipped.png"
    flipped.save(flipped_path)

    def edit(first: Path, second: Path) -> Any:
        nodes = workflow("base")
        nodes["a"] = {"type": "LoadImage", "inputs": {"image": str(first)}}
        nodes["b"] = {"type": "LoadImage", "inputs": {"image": str(second)}}
        nodes["refs"] = {
            "type": "ReferenceMultiLatent",
            "inputs": {
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "vae": ["vae", "vae"],
                "image0": ["a", "image"],
                "image1": ["b", "image"],
                "resolution": "crop",
            },
        }
        sampler = nodes["k"]["inputs"]
        sampler["positive"], sampler["negative"] = ["refs", "positive"], ["refs", "negative"]
        sampler["latent"] = ["refs", "empty_latent"]
        return image_of(run_flux3(nodes, ["dec"]))

    ours = edit(path, flipped_path)
    swapped = edit(flipped_path, path)
    pipe = pipeline(flux3_models, "base", guidance_scale=3.5)
    theirs = reference(pipe, prompt=PROMPT, image=[picture, flipped], num_inference_steps=3)
    plain = image_of(run_flux3(workflow("base"), ["dec"]))
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (ours - plain).abs().max().item() > 1e-4  # the references are seen
    assert (ours - swapped).abs().max().item() > 1e-4  # and told apart by order


@pytest.mark.slow
def test_distilled_split_sigmas_chain_equals_one_run(run_flux3: Any) -> None:
    """The flow map's target is the level each step goes to: the high half of SplitSigmas
    ends above 0, and chaining it with the low half (no noise added again) gives the
    one-run image."""
    nodes = workflow("distilled", steps=4, cfg=1.0)
    del nodes["k"], nodes["neg"]
    nodes.update(
        {
            "noise": {"type": "RandomNoise", "inputs": {"noise_seed": 42}},
            "off": {"type": "DisableNoise", "inputs": {}},
            "guide": {
                "type": "BasicGuider",
                "inputs": {"model": ["unet", "model"], "conditioning": ["pos", "conditioning"]},
            },
            "pick": {"type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
            "levels": {
                "type": "BasicScheduler",
                "inputs": {"model": ["unet", "model"], "scheduler": "simple", "steps": 4},
            },
            "split": {"type": "SplitSigmas", "inputs": {"sigmas": ["levels", "sigmas"], "step": 2}},
        }
    )

    def sample(name: str, noise: str, sigmas: list[str], latent: list[str]) -> None:
        nodes[name] = {
            "type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": [noise, "noise"],
                "guider": ["guide", "guider"],
                "sampler": ["pick", "sampler"],
                "sigmas": sigmas,
                "latent_image": latent,
            },
        }

    sample("whole", "noise", ["levels", "sigmas"], ["lat", "latent"])
    sample("high", "noise", ["split", "high_sigmas"], ["lat", "latent"])
    sample("low", "off", ["split", "low_sigmas"], ["high", "output"])
    nodes["dec2"] = {
        "type": "VAEDecode",
        "inputs": {"vae": ["vae", "vae"], "latent": ["low", "output"]},
    }
    nodes["dec"]["inputs"]["latent"] = ["whole", "output"]
    result = run_flux3(nodes, ["dec", "dec2"])
    whole, chained = image_of(result, "dec"), image_of(result, "dec2")
    assert float(whole.std()) > 0.01
    assert (whole - chained).abs().max().item() <= 1e-4
