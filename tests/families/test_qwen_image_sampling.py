"""Qwen-Image beyond text-to-image at cfg 1: image to image against QwenImageImg2ImgPipeline,
ComfyUI's custom sampling against KSampler, and fp8 weight storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.families.test_qwen_image_parity import PROMPT, TOLERANCE, reference, split_workflow
from tests.families.workflows import SIZE, image_of
from tests.fixtures import qwen_image_family

# Variants of the family's behaviour (samplers, layouts, edge cases): run with --slow.
pytestmark = pytest.mark.slow

qwen_models = qwen_image_family.qwen_models
qwen_manager = qwen_image_family.qwen_manager
run_qwen = qwen_image_family.run_qwen


def test_image_to_image_equals_qwen_image_img2img_pipeline(
    qwen_models: Any, run_qwen: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VAEEncode -> KSampler at denoise 0.5 (2 steps of a 4-step schedule) equals
    QwenImageImg2ImgPipeline at strength 0.5 of 4 steps."""
    import numpy as np
    from diffusers import QwenImageImg2ImgPipeline
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_img2img
    from PIL import Image as PILImage

    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    picture = PILImage.fromarray(rgb, "RGB")
    picture.save(tmp_path / "picture.png")
    nodes = split_workflow(steps=2)
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(tmp_path / "picture.png")}}
    nodes["enc"] = {
        "type": "VAEEncode",
        "inputs": {"vae": ["vae", "vae"], "image": ["img", "image"]},
    }
    nodes["k"]["inputs"].update(latent=["enc", "latent"], denoise=0.5)
    del nodes["lat"]
    ours = image_of(run_qwen(nodes, ["dec"]))
    # the pipeline samples the image's posterior with the generator before drawing the noise;
    # Easel (as the Edit pipelines) takes its mode: the test makes the pipeline take it too
    monkeypatch.setattr(
        pipeline_qwenimage_img2img,
        "retrieve_latents",
        lambda output, generator=None, sample_mode="sample": output.latent_dist.mode(),
    )
    pipe = qwen_models.pipe
    img2img = QwenImageImg2ImgPipeline(
        **{k: getattr(pipe, k) for k in ("scheduler", "vae", "text_encoder", "tokenizer")},
        transformer=pipe.transformer,
    )
    img2img.prompt_template_encode_start_idx = pipe.prompt_template_encode_start_idx
    theirs = reference(
        img2img,
        prompt=PROMPT,
        image=picture,
        strength=0.5,
        num_inference_steps=4,
        true_cfg_scale=1.0,
    )
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    plain = image_of(run_qwen(split_workflow(steps=2), ["dec"]))
    assert (ours - plain).abs().max().item() > max(100 * error, 10 * TOLERANCE)


def test_custom_sampling_with_cfg_guider_equals_ksampler(run_qwen: Any) -> None:
    """ComfyUI's SamplerCustomAdvanced (RandomNoise, CFGGuider with a negative, KSamplerSelect
    euler, BasicScheduler simple) gives KSampler's image, on a model with a fixed shift as the
    templates set it (ModelSamplingAuraFlow): without one, BasicScheduler takes a 1024x1024
    image's shift (ComfyUI's way) and KSampler the sampled image's (the pipeline's)."""
    nodes = split_workflow()
    nodes["shift"] = {
        "type": "ModelSamplingAuraFlow",
        "inputs": {"model": ["unet", "model"], "shift": 3.1},
    }
    nodes["neg"] = {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": "blurry"}}
    nodes["k"]["inputs"].update(model=["shift", "model"], negative=["neg", "conditioning"], cfg=3.0)
    ksampler = image_of(run_qwen(nodes, ["dec"]))
    custom = {name: spec for name, spec in nodes.items() if name != "k"}
    custom.update(
        noise={"type": "RandomNoise", "inputs": {"noise_seed": 42}},
        guider={
            "type": "CFGGuider",
            "inputs": {
                "model": ["shift", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "cfg": 3.0,
            },
        },
        sampler={"type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        sigmas={
            "type": "BasicScheduler",
            "inputs": {"model": ["shift", "model"], "scheduler": "simple", "steps": 3},
        },
        k={
            "type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", "noise"],
                "guider": ["guider", "guider"],
                "sampler": ["sampler", "sampler"],
                "sigmas": ["sigmas", "sigmas"],
                "latent_image": ["lat", "latent"],
            },
        },
    )
    custom["dec"] = {
        "type": "VAEDecode",
        "inputs": {"vae": ["vae", "vae"], "latent": ["k", "output"]},
    }
    ours = image_of(run_qwen(custom, ["dec"]))
    assert float(ours.std()) > 0.01
    assert (ours - ksampler).abs().max().item() <= 1e-4
    guided_off = image_of(run_qwen(split_workflow(), ["dec"]))
    assert (ours - guided_off).abs().max().item() > 1e-3  # the negative and cfg 3 are seen


def test_fp8_weights_run_close_to_full_precision(run_qwen: Any) -> None:
    """weight_dtype fp8_e4m3fn stores the transformer's weights in 8 bits and computes in
    float32: the image stays close to the full-precision one (not equal: the weights are
    rounded)."""
    full = image_of(run_qwen(split_workflow(), ["dec"]))
    nodes = split_workflow()
    nodes["unet"]["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    fp8 = image_of(run_qwen(nodes, ["dec"]))
    assert 0.0 < (full - fp8).abs().max().item() < 0.1
