"""ERNIE-Image from ComfyUI's split files (the transformer in ComfyUI's keys, a Ministral-3-3B
text encoder with its tekken tokenizer inside, the Flux.2 VAE) through Easel's nodes gives
diffusers' ErnieImagePipeline image (CPU fp32, tiny random weights, max abs pixel difference
1e-3), with and without classifier-free guidance; the text encoder comes through CLIPLoader
type flux2 (as in ComfyUI's templates) and Flux.2's own Mistral is still Flux.2's; a diffusers
ErnieImagePipeline folder gives the same image."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, custom_sampling, image_of
from tests.fixtures import ernie_family

ernie_models = ernie_family.ernie_models
ernie_manager = ernie_family.ernie_manager
run_ernie = ernie_family.run_ernie

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
NEGATIVE = "blurry"


def split_workflow(*, steps: int = 3, cfg: float = 1.0, negative: str = "") -> dict[str, Any]:
    """ComfyUI's ERNIE-Image template shape: UNETLoader, CLIPLoader type flux2, VAELoader,
    CLIPTextEncode (twice), EmptyFlux2LatentImage, KSampler, VAEDecode."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "ernie-image.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "ministral-3-3b.safetensors", "type": "flux2"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "flux2-vae.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": negative}},
        "lat": {
            "type": "EmptyLatent",
            "inputs": {"width": SIZE, "height": SIZE, "vae": ["vae", "vae"]},
        },
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


def reference(pipe: Any, **kwargs: Any) -> Any:
    out = pipe(
        height=SIZE,
        width=SIZE,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
        **kwargs,
    ).images
    return as_tensor(out)


def test_split_files_equal_ernie_pipeline(ernie_models: Any, run_ernie: Any) -> None:
    """cfg 1 (ERNIE-Image Turbo's template) is the pipeline's guidance_scale 1."""
    ours = image_of(run_ernie(split_workflow(), ["dec"]))
    theirs = reference(ernie_models.pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=1.0)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_cfg_equals_ernie_guidance(ernie_models: Any, run_ernie: Any) -> None:
    """cfg 4 with a negative prompt (ERNIE-Image's template) is the pipeline's guidance 4."""
    ours = image_of(run_ernie(split_workflow(steps=2, cfg=4.0, negative=NEGATIVE), ["dec"]))
    theirs = reference(
        ernie_models.pipe,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=2,
        guidance_scale=4.0,
    )
    unguided = image_of(run_ernie(split_workflow(steps=2), ["dec"]))
    assert (ours - unguided).abs().max().item() > 0.01  # guidance changes the image
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_diffusers_folder_equals_pipeline(
    ernie_models: Any, run_ernie: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ErnieImagePipeline folder saved by diffusers loads through CheckpointLoader."""
    folder = ernie_models.root / "models" / "checkpoints" / "ernie-diffusers"
    if not folder.exists():
        ernie_models.pipe.save_pretrained(str(folder))
    nodes = split_workflow(steps=2)
    nodes["ckpt"] = {"type": "CheckpointLoader", "inputs": {"name": "ernie-diffusers"}}
    for node, link in (("pos", "clip"), ("neg", "clip"), ("k", "model")):
        nodes[node]["inputs"][link] = ["ckpt", link]
    nodes["dec"]["inputs"]["vae"] = ["ckpt", "vae"]
    nodes["lat"]["inputs"]["vae"] = ["ckpt", "vae"]
    for unused in ("unet", "clip", "vae"):
        del nodes[unused]
    monkeypatch.setenv("EASEL_MODELS_DIR", str(ernie_models.root / "models"))
    ours = image_of(run_ernie(nodes, ["dec"]))
    theirs = reference(ernie_models.pipe, prompt=PROMPT, num_inference_steps=2, guidance_scale=1.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_custom_sampling_with_cfg_guider_equals_ksampler(run_ernie: Any) -> None:
    """ComfyUI's SamplerCustomAdvanced (RandomNoise, CFGGuider with a negative, KSamplerSelect
    euler, BasicScheduler simple: the family's shifted sigmas) gives KSampler's image."""
    nodes = split_workflow(steps=3, cfg=2.5, negative=NEGATIVE)
    ksampler = image_of(run_ernie(nodes, ["dec"]))
    custom = custom_sampling(nodes, cfg=2.5)
    ours = image_of(run_ernie(custom, ["dec"]))
    assert float(ours.std()) > 0.01
    assert (ours - ksampler).abs().max().item() <= 1e-4
