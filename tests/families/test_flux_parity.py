"""Flux.1 from ComfyUI's split files (diffusion model, CLIP-L + T5 text encoders, 16-channel VAE,
all in their original key layouts) through Easel's nodes gives diffusers' FluxPipeline image
(CPU fp32, tiny random weights, max abs pixel diff 1e-3), and a diffusers Flux folder the same."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import flux_family

# the session fixtures of the tiny Flux models (shared with the other Flux test modules)
flux_root = flux_family.flux_root
flux_models = flux_family.flux_models
flux_manager = flux_family.flux_manager
run_flux = flux_family.run_flux

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"


def split_workflow(
    variant: str,
    *,
    steps: int = 3,
    guidance: float = 3.5,
    sampler_name: str = "euler",
    scheduler: str = "simple",
    size: int = SIZE,
) -> dict[str, Any]:
    """ComfyUI's Flux template shape: UNETLoader, DualCLIPLoader, VAELoader,
    CLIPTextEncodeFlux, EmptySD3LatentImage, KSampler (cfg 1), VAEDecode."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": f"flux-{variant}.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "DualTextEncoderLoader",
            "inputs": {"name1": "t5xxl.safetensors", "name2": "clip_l.safetensors", "type": "flux"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "ae.safetensors"}},
        "pos": {
            "type": "TextEncodeFlux",
            "inputs": {
                "clip": ["clip", "clip"],
                "clip_l": PROMPT,
                "t5xxl": PROMPT,
                "guidance": guidance,
            },
        },
        "lat": {"type": "EmptyLatent", "inputs": {"width": size, "height": size}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": sampler_name,
                "scheduler": scheduler,
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }


def reference(pipe: Any, **kwargs: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    kwargs.setdefault("height", SIZE)
    kwargs.setdefault("width", SIZE)
    out = pipe(
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
        max_sequence_length=256,
        **kwargs,
    ).images
    return as_tensor(out)


def test_flux_dev_split_files_equal_flux_pipeline(flux_models: Any, run_flux: Any) -> None:
    ours = image_of(run_flux(split_workflow("dev"), ["dec"]))
    theirs = reference(
        flux_models["dev"].pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=3.5
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_flux_schnell_split_files_equal_flux_pipeline(flux_models: Any, run_flux: Any) -> None:
    ours = image_of(run_flux(split_workflow("schnell", steps=2), ["dec"]))
    theirs = reference(
        flux_models["schnell"].pipe, prompt=PROMPT, num_inference_steps=2, guidance_scale=0.0
    )
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_guidance_reaches_the_model(flux_models: Any, run_flux: Any) -> None:
    """FluxGuidance changes dev's image exactly as the pipeline's guidance_scale does."""
    nodes = split_workflow("dev")
    nodes["g"] = {
        "type": "FluxGuidance",
        "inputs": {"conditioning": ["pos", "conditioning"], "guidance": 7.0},
    }
    nodes["k"]["inputs"]["positive"] = ["g", "conditioning"]
    ours = image_of(run_flux(nodes, ["dec"]))
    theirs = reference(
        flux_models["dev"].pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=7.0
    )
    default = reference(
        flux_models["dev"].pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=3.5
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (theirs - default).abs().max().item() > 10 * TOLERANCE


def test_true_cfg_with_a_negative_equals_pipeline(flux_models: Any, run_flux: Any) -> None:
    """cfg > 1 with a linked negative is FluxPipeline's true CFG (true_cfg_scale)."""
    nodes = split_workflow("dev")
    nodes["neg"] = {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": "blurry"}}
    nodes["k"]["inputs"].update(negative=["neg", "conditioning"], cfg=2.5)
    ours = image_of(run_flux(nodes, ["dec"]))
    theirs = reference(
        flux_models["dev"].pipe,
        prompt=PROMPT,
        negative_prompt="blurry",
        true_cfg_scale=2.5,
        num_inference_steps=3,
        guidance_scale=3.5,
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_model_sampling_flux_at_the_image_size_is_the_pipeline_shift(
    flux_models: Any, run_flux: Any
) -> None:
    """ModelSamplingFlux with the image's width and height is FluxPipeline's mu; another size
    gives another image."""
    nodes = split_workflow("dev")
    nodes["ms"] = {
        "type": "ModelSamplingFlux",
        "inputs": {
            "model": ["unet", "model"],
            "max_shift": 1.15,
            "base_shift": 0.5,
            "width": SIZE,
            "height": SIZE,
        },
    }
    nodes["k"]["inputs"]["model"] = ["ms", "model"]
    same = image_of(run_flux(nodes, ["dec"]))
    plain = image_of(run_flux(split_workflow("dev"), ["dec"]))
    nodes["ms"]["inputs"].update(width=1024, height=1024)
    large = image_of(run_flux(nodes, ["dec"]))
    assert (same - plain).abs().max().item() <= 1e-5
    assert (large - plain).abs().max().item() > 10 * TOLERANCE


def test_diffusers_folder_gives_the_same_image(
    flux_models: Any, flux_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CheckpointLoader on the diffusers FluxPipeline folder equals the split files."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [flux_root / "diffusers", flux_root / "models", flux_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow("dev")
    folder = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "flux-dev"}},
        "pos": {
            "type": "TextEncodeFlux",
            "inputs": {
                "clip": ["ckpt", "clip"],
                "clip_l": PROMPT,
                "t5xxl": PROMPT,
                "guidance": 3.5,
            },
        },
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    images = [
        image_of(
            executor.run(
                {"format": "easel.workflow", "version": 1, "nodes": nodes},
                targets=["dec"],
                keep_values=True,
            )
        )
        for nodes in (split, folder)
    ]
    assert torch.equal(images[0], images[1])


def test_single_file_with_every_part_gives_the_same_image(
    flux_models: Any, flux_root: Path, run_flux: Any
) -> None:
    """A Flux checkpoint in ComfyUI's all-in-one layout (CheckpointLoaderSimple) equals the
    split files."""
    flux_family.write_checkpoint(flux_models["dev"], flux_root)
    split = split_workflow("dev")
    single = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "flux-dev-all.safetensors"}},
        "pos": {
            "type": "TextEncodeFlux",
            "inputs": {
                "clip": ["ckpt", "clip"],
                "clip_l": PROMPT,
                "t5xxl": PROMPT,
                "guidance": 3.5,
            },
        },
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    images = [image_of(run_flux(nodes, ["dec"])) for nodes in (split, single)]
    assert torch.equal(images[0], images[1])


def test_flux_fill_with_inpaint_model_conditioning_equals_flux_fill_pipeline(
    flux_models: Any, run_flux: Any, tmp_path: Path
) -> None:
    """Flux Fill (384 input channels, recognised from its file) through
    InpaintModelConditioning equals diffusers' FluxFillPipeline."""
    from easel.models.flux_denoiser import pack
    from tests.families.test_sd_parity import _inpaint_inputs

    path, picture, mask = _inpaint_inputs(tmp_path)
    nodes = split_workflow("fill", guidance=30.0)
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(path)}}
    nodes["cond"] = {
        "type": "InpaintModelConditioning",
        "inputs": {
            "vae": ["vae", "vae"],
            "image": ["img", "image"],
            "mask": ["img", "mask"],
            "positive": ["pos", "conditioning"],
            "negative": ["pos", "conditioning"],
            "noise_mask": False,
        },
    }
    nodes["k"]["inputs"].update(positive=["cond", "positive"], latent=["cond", "latent"])
    del nodes["lat"]
    ours = image_of(run_flux(nodes, ["dec"]))
    # FluxFillPipeline draws the image latents before the noise: hand it Easel's noise
    noise = torch.randn(
        (1, 16, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(42)
    )
    theirs = reference(
        flux_models["fill"].pipe,
        prompt=PROMPT,
        image=picture,
        mask_image=mask,
        num_inference_steps=3,
        guidance_scale=30.0,
        latents=pack(noise),
    )
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_kontext_reference_latent_equals_flux_kontext_pipeline(
    flux_models: Any, run_flux: Any, tmp_path: Path
) -> None:
    """A dev-architecture model with a reference image (VAEEncode -> ReferenceLatent) equals
    diffusers' FluxKontextPipeline; without the reference the image is another."""
    from diffusers import FluxKontextPipeline

    from easel.models.flux_denoiser import pack
    from tests.families.test_sd_parity import _inpaint_inputs

    path, picture, _ = _inpaint_inputs(tmp_path)
    nodes = split_workflow("dev", guidance=2.5)
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
    ours = image_of(run_flux(nodes, ["dec"]))
    pipe = flux_models["dev"].pipe
    kontext = FluxKontextPipeline(
        **{
            k: getattr(pipe, k)
            for k in (
                "scheduler",
                "vae",
                "text_encoder",
                "tokenizer",
                "text_encoder_2",
                "tokenizer_2",
                "transformer",
            )
        }
    )
    # the pipeline encodes the reference before drawing noise: hand it Easel's noise
    noise = torch.randn(
        (1, 16, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(42)
    )
    theirs = reference(
        kontext,
        prompt=PROMPT,
        image=picture,
        num_inference_steps=3,
        guidance_scale=2.5,
        latents=pack(noise),
        _auto_resize=False,
        max_area=SIZE * SIZE,
    )
    plain = image_of(run_flux(split_workflow("dev", guidance=2.5), ["dec"]))
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (ours - plain).abs().max().item() > TOLERANCE  # the reference is seen
