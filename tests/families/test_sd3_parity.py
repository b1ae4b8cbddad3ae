"""SD3.5 from ComfyUI's split files (diffusion model, CLIP-L + CLIP-G + T5 text encoders,
16-channel VAE, all in their original key layouts) through Easel's nodes gives diffusers'
StableDiffusion3Pipeline image (CPU fp32, tiny random weights, max abs pixel diff 1e-3); so do
the single file holding every part and the diffusers folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import sd3_family

# the session fixtures of the tiny SD3.5 models (shared with the other SD3 test modules)
sd3_root = sd3_family.sd3_root
sd3_models = sd3_family.sd3_models
sd3_manager = sd3_family.sd3_manager
run_sd3 = sd3_family.run_sd3

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
STEPS = 3


def split_workflow(
    variant: str = "large", *, cfg: float = 4.5, clip_type: str = "triple", steps: int = STEPS
) -> dict[str, Any]:
    """ComfyUI's SD3.5 split-file shape: UNETLoader, TripleCLIPLoader (or DualCLIPLoader
    without T5), VAELoader, CLIPTextEncode, EmptySD3LatentImage, KSampler, VAEDecode."""
    clip: dict[str, Any] = {
        "type": "TripleTextEncoderLoader",
        "inputs": {
            "name1": "clip_g.safetensors",
            "name2": "t5xxl_fp16.safetensors",
            "name3": "clip_l.safetensors",
            "type": "sd3",
        },
    }
    if clip_type == "dual":
        clip = {
            "type": "DualTextEncoderLoader",
            "inputs": {"name1": "clip_l.safetensors", "name2": "clip_g.safetensors", "type": "sd3"},
        }
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {
                "name": f"{sd3_family.FILE_NAMES[variant]}.safetensors",
                "weight_dtype": "default",
            },
        },
        "clip": clip,
        "vae": {"type": "VAELoader", "inputs": {"name": "sd3_vae.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
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


def reference(pipe: Any, steps: int = STEPS, **kwargs: Any) -> Any:
    """The pipeline's image with ComfyUI's "simple" sigmas (linspace(1, 1/n, n) before the
    shift) and T5 padded to 77 tokens (ComfyUI's SD3 length)."""
    pipe.set_progress_bar_config(disable=True)
    kwargs.setdefault("prompt", PROMPT)
    kwargs.setdefault("guidance_scale", 4.5)
    out = pipe(
        height=SIZE,
        width=SIZE,
        num_inference_steps=steps,
        sigmas=list(np.linspace(1.0, 1 / steps, steps)),
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
        max_sequence_length=77,
        **kwargs,
    ).images
    return as_tensor(out)


def checkpoint_workflow(name: str, **prompts: Any) -> dict[str, Any]:
    split = split_workflow()
    return {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": name}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }


@pytest.mark.parametrize("variant", ["large", "medium"])
def test_split_files_equal_sd3_pipeline(variant: str, sd3_models: Any, run_sd3: Any) -> None:
    """Large (qk norm) and Medium (a second image attention), the default negative being the
    empty prompt as the pipeline's."""
    ours = image_of(run_sd3(split_workflow(variant), ["dec"]))
    theirs = reference(sd3_models[variant].pipe)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_recognised_families(sd3_models: Any, run_sd3: Any) -> None:
    nodes = split_workflow("medium")
    result = run_sd3({"unet": nodes["unet"]}, ["unet"])
    assert result.values["unet"]["model"].family.name == "sd3.5-medium"
    nodes = split_workflow("large")
    result = run_sd3({"unet": nodes["unet"]}, ["unet"])
    assert result.values["unet"]["model"].family.name == "sd3.5-large"


def test_negative_prompt_and_cfg_equal_pipeline(sd3_models: Any, run_sd3: Any) -> None:
    nodes = split_workflow(cfg=6.0)
    nodes["neg"] = {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": "blurry"}}
    nodes["k"]["inputs"]["negative"] = ["neg", "conditioning"]
    ours = image_of(run_sd3(nodes, ["dec"]))
    theirs = reference(sd3_models["large"].pipe, negative_prompt="blurry", guidance_scale=6.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_text_encode_sd3_prompt_per_encoder_equals_pipeline(sd3_models: Any, run_sd3: Any) -> None:
    """TextEncodeSD3's clip_l, clip_g and t5xxl are the pipeline's prompt, prompt_2 and
    prompt_3; another T5 prompt gives another image."""
    nodes = split_workflow()
    nodes["pos"] = {
        "type": "TextEncodeSD3",
        "inputs": {
            "clip": ["clip", "clip"],
            "clip_l": "a red circle",
            "clip_g": "on a blue square",
            "t5xxl": PROMPT,
            "empty_padding": "none",
        },
    }
    ours = image_of(run_sd3(nodes, ["dec"]))
    theirs = reference(
        sd3_models["large"].pipe,
        prompt="a red circle",
        prompt_2="on a blue square",
        prompt_3=PROMPT,
    )
    plain = reference(sd3_models["large"].pipe)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (theirs - plain).abs().max().item() > 10 * TOLERANCE


def test_model_sampling_sd3_shift_equals_pipeline_shift(sd3_models: Any, run_sd3: Any) -> None:
    """ModelSamplingSD3 shift 3.0 is the family's own; shift 6.0 is the pipeline's scheduler
    with shift 6.0."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    nodes = split_workflow()
    nodes["ms"] = {"type": "ModelSamplingSD3", "inputs": {"model": ["unet", "model"], "shift": 6.0}}
    nodes["k"]["inputs"]["model"] = ["ms", "model"]
    ours = image_of(run_sd3(nodes, ["dec"]))
    pipe = sd3_models["large"].pipe
    default = pipe.scheduler
    try:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(default.config, shift=6.0)
        theirs = reference(pipe)
    finally:
        pipe.scheduler = default
    plain = reference(pipe)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (theirs - plain).abs().max().item() > 10 * TOLERANCE


def test_dual_clip_loader_without_t5_equals_pipeline_without_t5(
    sd3_models: Any, run_sd3: Any
) -> None:
    """DualCLIPLoader type sd3 (CLIP-L + CLIP-G): the T5 tokens are zeros, as the pipeline
    without text_encoder_3 makes them; the single file without T5 gives the same image."""
    from diffusers import StableDiffusion3Pipeline

    ours = image_of(run_sd3(split_workflow(clip_type="dual"), ["dec"]))
    pipe = sd3_models["large"].pipe
    components = {**pipe.components, "text_encoder_3": None, "tokenizer_3": None}
    theirs = reference(StableDiffusion3Pipeline(**components))
    single = image_of(run_sd3(checkpoint_workflow("sd3.5_large_no_t5.safetensors"), ["dec"]))
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert torch.equal(ours, single)


def test_t5_alone_runs_with_zero_pooled_embedding(sd3_models: Any, run_sd3: Any) -> None:
    """CLIPLoader type sd3 with the T5 file alone: T5's embeddings and a zero pooled
    embedding (ComfyUI's), equal to the pipeline given those embeddings."""
    nodes = split_workflow()
    nodes["clip"] = {
        "type": "TextEncoderLoader",
        "inputs": {"name": "t5xxl_fp16.safetensors", "type": "sd3"},
    }
    ours = image_of(run_sd3(nodes, ["dec"]))
    pipe = sd3_models["large"].pipe
    width = pipe.transformer.config.pooled_projection_dim

    def t5(text: str) -> Any:
        return pipe._get_t5_prompt_embeds(text, max_sequence_length=77, device="cpu")

    theirs = reference(
        pipe,
        prompt=None,
        prompt_embeds=t5(PROMPT),
        negative_prompt_embeds=t5(""),
        pooled_prompt_embeds=torch.zeros(1, width),
        negative_pooled_prompt_embeds=torch.zeros(1, width),
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_single_file_with_every_part_equals_split_files(sd3_models: Any, run_sd3: Any) -> None:
    """ComfyUI's single-file SD3.5 layout (CheckpointLoaderSimple) equals the split files."""
    split = image_of(run_sd3(split_workflow(), ["dec"]))
    single = image_of(run_sd3(checkpoint_workflow("sd3.5_large.safetensors"), ["dec"]))
    assert torch.equal(split, single)


def test_diffusers_folder_equals_pipeline(
    sd3_models: Any, sd3_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CheckpointLoader on the diffusers StableDiffusion3Pipeline folder (not taken for a Flux
    folder, which has the same transformer/ and text_encoder_2/)."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [sd3_root / "diffusers", sd3_root / "models", sd3_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    workflow = {
        "format": "easel.workflow",
        "version": 1,
        "nodes": checkpoint_workflow("sd3.5-medium"),
    }
    ours = image_of(executor.run(workflow, targets=["dec"], keep_values=True))
    theirs = reference(sd3_models["medium"].pipe)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_wrong_text_encoder_files_are_named(sd3_models: Any, run_sd3: Any) -> None:
    nodes = split_workflow()
    nodes["clip"]["inputs"].update(name1="t5xxl_fp16.safetensors")  # two T5, one CLIP
    result = run_sd3(nodes, ["dec"])
    assert result.status == "failed"
    [failure] = result.failures
    assert (failure.node, failure.input) == ("clip", "type")
    assert "1 CLIP and 2 T5" in failure.message
