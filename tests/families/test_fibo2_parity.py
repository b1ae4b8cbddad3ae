"""Fibo 2.0 from split files (the transformer in diffusers' keys, a Qwen3-VL text encoder in
ComfyUI's keys, the Flux.2 VAE) through Easel's nodes (KSampler, euler / simple, CFG) gives
diffusers' BriaFibo2Pipeline image (CPU fp32, tiny random weights, max abs pixel difference
1e-3) for the same noise and schedule."""

from __future__ import annotations

import json
from typing import Any

import torch

from tests.families.workflows import as_tensor, image_of
from tests.fixtures import fibo2_family
from tests.fixtures.fibo2_family import FILES, SIZE, noise_latents

fibo2_models = fibo2_family.fibo2_models
fibo2_manager = fibo2_family.fibo2_manager
run_fibo2 = fibo2_family.run_fibo2

TOLERANCE = 1e-3
# A structured caption with an empty value, which both sides drop before encoding
PROMPT = json.dumps(
    {"short_description": "a red circle on a blue square", "lighting": {}, "style_medium": "x"}
)
NEGATIVE = "blurry"
SEED = 42
STEPS = 3
CFG = 3.0


def workflow(steps: int = STEPS) -> dict[str, Any]:
    return {
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": FILES["transformer"]}},
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": FILES["text_encoder"], "type": "fibo2"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": FILES["vae"]}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": NEGATIVE}},
        "lat": {"type": "EmptyFlux2LatentImage", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": SEED,
                "steps": steps,
                "cfg": CFG,
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }


def test_ksampler_graph_equals_bria_fibo2_pipeline(fibo2_models: Any, run_fibo2: Any) -> None:
    result = run_fibo2(workflow(), ["dec"])
    assert not result.failures, result.failures
    ours = image_of(result)
    pipe = fibo2_models.pipe
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            guidance_scale=CFG,
            latents=noise_latents(SEED),
            output_type="np",
        ).images
    )
    assert float(ours.std()) > 0.01
    diff = (ours - theirs).abs().max().item()
    print(f"Fibo 2.0 parity: max abs pixel difference {diff:.2e}")
    assert diff <= TOLERANCE
    assert not torch.isnan(ours).any()


def test_text_encode_fibo2_refuses_what_it_cannot_do(run_fibo2: Any, tmp_path: Any) -> None:
    """Images to edit without the VAE are refused naming `vae`; a caption whose text_render
    entries have text (the pipeline shows Qwen3-VL drawn images of it) naming `prompt`."""
    from PIL import Image as PILImage

    PILImage.new("RGB", (32, 32), (200, 30, 40)).save(tmp_path / "in.png")
    clip = workflow()["clip"]
    encode = {"clip": ["clip", "clip"], "prompt": "make it blue", "width": SIZE, "height": SIZE}
    nodes = {
        "clip": clip,
        "load": {"type": "LoadImage", "inputs": {"image": str(tmp_path / "in.png")}},
        "enc": {"type": "TextEncodeFibo2", "inputs": {**encode, "image_1": ["load", "image"]}},
    }
    [failure] = run_fibo2(nodes, ["enc"]).failures
    assert (failure.node, failure.input) == ("enc", "vae")
    caption = {"short_description": "a sign", "text_render": [{"text": "OPEN"}]}
    nodes = {
        "clip": clip,
        "enc": {"type": "TextEncodeFibo2", "inputs": {**encode, "prompt": json.dumps(caption)}},
    }
    [failure] = run_fibo2(nodes, ["enc"]).failures
    assert (failure.node, failure.input) == ("enc", "prompt")
    assert "text_render" in failure.message
