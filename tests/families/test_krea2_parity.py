"""Krea 2 from ComfyUI's split files (the transformer in the original keys, a Qwen3-VL text
encoder in ComfyUI's keys, the Qwen-Image VAE) through Easel's nodes gives diffusers'
Krea2Pipeline image (CPU fp32, tiny random weights, max abs pixel difference 1e-3), with and
without classifier-free guidance; a diffusers Krea2Pipeline folder gives the same image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, custom_sampling, image_of
from tests.fixtures import krea2_family

krea2_models = krea2_family.krea2_models
krea2_manager = krea2_family.krea2_manager
run_krea2 = krea2_family.run_krea2

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
NEGATIVE = "blurry"


def split_workflow(*, steps: int = 3, cfg: float = 1.0, negative: str = "") -> dict[str, Any]:
    """ComfyUI's Krea 2 template shape: UNETLoader, CLIPLoader type krea2, VAELoader,
    CLIPTextEncode, EmptyLatentImage, KSampler, VAEDecode."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "krea2_turbo.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen3vl_4b.safetensors", "type": "krea2"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "qwen_image_vae.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": negative}},
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
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
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        height=SIZE,
        width=SIZE,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
        **kwargs,
    ).images
    return as_tensor(out)


def test_turbo_split_files_equal_krea2_pipeline(krea2_models: Any, run_krea2: Any) -> None:
    """cfg 1 (the Krea 2 Turbo template's) is the pipeline's guidance_scale 0."""
    ours = image_of(run_krea2(split_workflow(), ["dec"]))
    theirs = reference(krea2_models.pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=0.0)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_cfg_equals_krea2_guidance(krea2_models: Any, run_krea2: Any) -> None:
    """Krea2Pipeline's guidance g is `cond + g * (cond - uncond)`: ComfyUI's cfg g + 1."""
    ours = image_of(run_krea2(split_workflow(steps=2, cfg=2.5, negative=NEGATIVE), ["dec"]))
    theirs = reference(
        krea2_models.pipe,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=2,
        guidance_scale=1.5,
    )
    unguided = image_of(run_krea2(split_workflow(steps=2), ["dec"]))
    assert (ours - unguided).abs().max().item() > 0.01  # guidance changes the image
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_diffusers_folder_equals_split_files(
    krea2_models: Any, run_krea2: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Krea2Pipeline folder saved by diffusers (is_distilled) loads through
    CheckpointLoader and gives the pipeline's image."""
    import os

    folder = krea2_models.root / "models" / "checkpoints" / "krea2-diffusers"
    if not folder.exists():
        krea2_models.pipe.save_pretrained(str(folder))
    nodes = split_workflow(steps=2)
    nodes["ckpt"] = {"type": "CheckpointLoader", "inputs": {"name": "krea2-diffusers"}}
    nodes["pos"]["inputs"]["clip"] = ["ckpt", "clip"]
    nodes["neg"]["inputs"]["clip"] = ["ckpt", "clip"]
    nodes["k"]["inputs"]["model"] = ["ckpt", "model"]
    nodes["dec"]["inputs"]["vae"] = ["ckpt", "vae"]
    for unused in ("unet", "clip", "vae"):
        del nodes[unused]
    root = krea2_models.root
    monkeypatch.setenv(
        "EASEL_MODELS_DIR", os.pathsep.join(str(p) for p in (root / "models", root / "ComfyUI"))
    )
    ours = image_of(run_krea2(nodes, ["dec"]))
    theirs = reference(krea2_models.pipe, prompt=PROMPT, num_inference_steps=2, guidance_scale=0.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_custom_sampling_with_cfg_guider_equals_ksampler(run_krea2: Any) -> None:
    """ComfyUI's SamplerCustomAdvanced (RandomNoise, CFGGuider with a negative, KSamplerSelect
    euler, BasicScheduler simple: the family's shifted sigmas) gives KSampler's image."""
    nodes = split_workflow(steps=3, cfg=2.5, negative=NEGATIVE)
    ksampler = image_of(run_krea2(nodes, ["dec"]))
    custom = custom_sampling(nodes, cfg=2.5)
    ours = image_of(run_krea2(custom, ["dec"]))
    assert float(ours.std()) > 0.01
    assert (ours - ksampler).abs().max().item() <= 1e-4
