"""LongCat-Image from ComfyUI's split files (the transformer in Black Forest Labs' keys,
Qwen2.5-VL in its original keys, the Flux VAE) through Easel's nodes gives diffusers'
LongCatImagePipeline image (CPU fp32, tiny random weights, max abs pixel diff 1e-3), without the
pipeline's prompt rewriting (which ComfyUI does not do either)."""

from __future__ import annotations

from typing import Any

import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import longcat_family

longcat_models = longcat_family.longcat_models
longcat_manager = longcat_family.longcat_manager
run_longcat = longcat_family.run_longcat

TOLERANCE = 1e-3
PROMPT = 'a red circle on a blue square, the sign says "OPEN"'


def split_workflow(*, steps: int = 3, cfg: float = 1.0, negative: str = "") -> dict[str, Any]:
    """ComfyUI's LongCat-Image template shape: UNETLoader, CLIPLoader type longcat_image,
    VAELoader, CLIPTextEncode, EmptySD3LatentImage, KSampler, VAEDecode."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "longcat_image.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen_2.5_vl_7b.safetensors", "type": "longcat_image"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "ae.safetensors"}},
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
    with torch.no_grad():
        out = pipe(
            height=SIZE,
            width=SIZE,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type="np",
            enable_prompt_rewrite=False,
            **kwargs,
        ).images
    return as_tensor(out)


def test_longcat_split_files_equal_longcat_image_pipeline(
    longcat_models: Any, run_longcat: Any
) -> None:
    ours = image_of(run_longcat(split_workflow(), ["dec"]))
    theirs = reference(
        longcat_models.pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=1.0
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_cfg_equals_the_pipeline_without_its_renorm(longcat_models: Any, run_longcat: Any) -> None:
    """KSampler's CFG is the pipeline's guidance (its optional renorm off: ComfyUI's CFGNorm
    node is another rescale)."""
    nodes = split_workflow(cfg=4.0, negative="blurry")
    ours = image_of(run_longcat(nodes, ["dec"]))
    theirs = reference(
        longcat_models.pipe,
        prompt=PROMPT,
        negative_prompt="blurry",
        num_inference_steps=3,
        guidance_scale=4.0,
        enable_cfg_renorm=False,
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_the_prompt_reaches_the_model(longcat_models: Any, run_longcat: Any) -> None:
    """Another prompt gives another image, the pipeline's for that prompt."""
    nodes = split_workflow()
    nodes["pos"]["inputs"]["text"] = "a green triangle"
    ours = image_of(run_longcat(nodes, ["dec"]))
    theirs = reference(
        longcat_models.pipe, prompt="a green triangle", num_inference_steps=3, guidance_scale=1.0
    )
    first = image_of(run_longcat(split_workflow(), ["dec"]))
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    assert (ours - first).abs().max().item() > max(100 * error, 1e-4)


def test_quoted_text_is_spelled_per_character(longcat_models: Any) -> None:
    """The prompt's pieces are the pipeline's: quoted text apart (spelled one character at a
    time), apostrophes inside words left alone. (With two different such words the pipeline's
    placeholders overlap and its result depends on set order: not compared.)"""
    from diffusers.pipelines.longcat_image.pipeline_longcat_image import (
        split_quotation as theirs,
    )

    from easel.models.longcat_text import split_quotation

    for text in (PROMPT, "don't say 'hi' or \u201cbye\u201d", "plain", "it's 'a' \"b\" it's"):
        assert split_quotation(text) == theirs(text)


def test_a_vae_file_is_not_a_text_encoder(run_longcat: Any, longcat_models: Any) -> None:
    """A file of the wrong kind gets an error naming the file and what was expected."""
    import shutil

    models = longcat_models.root / "models"
    target = models / "text_encoders" / "not_qwen.safetensors"
    shutil.copyfile(models / "vae" / "ae.safetensors", target)
    nodes = split_workflow()
    nodes["clip"]["inputs"]["name"] = "not_qwen.safetensors"
    result = run_longcat(nodes, ["pos"])
    target.unlink()
    assert result.status != "succeeded"
    message = str(result.failures)
    assert "not_qwen.safetensors" in message and "Qwen2.5-VL" in message
