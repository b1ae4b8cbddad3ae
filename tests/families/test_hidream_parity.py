"""HiDream-I1 from ComfyUI's split files (the transformer, the four text encoders of
QuadrupleCLIPLoader, the Flux VAE) through Easel's nodes gives diffusers' HiDreamImagePipeline
image (CPU fp32, tiny random weights, max abs pixel diff 1e-3)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import hidream_family

hidream_root = hidream_family.hidream_root
hidream_models = hidream_family.hidream_models
hidream_manager = hidream_family.hidream_manager
run_hidream = hidream_family.run_hidream

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
NEGATIVE = "bad ugly jpeg artifacts"
ENCODERS = {
    "name1": "clip_l_hidream.safetensors",
    "name2": "clip_g_hidream.safetensors",
    "name3": "t5xxl.safetensors",
    "name4": "llama_3.1_8b_instruct.safetensors",
}


def workflow(
    model: str = "hidream_i1_dev.safetensors",
    *,
    steps: int = 2,
    cfg: float = 1.0,
    negative: str | None = None,
    shift: float | None = None,
) -> dict[str, Any]:
    """ComfyUI's HiDream template shape: UNETLoader, QuadrupleCLIPLoader, VAELoader,
    CLIPTextEncode, EmptySD3LatentImage, (ModelSamplingSD3), KSampler, VAEDecode."""
    nodes: dict[str, Any] = {
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": model}},
        "clip": {
            "type": "QuadrupleTextEncoderLoader",
            "inputs": {**ENCODERS, "type": "hidream"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "ae.safetensors"}},
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
                "scheduler": "normal",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }
    if negative is not None:
        nodes["neg"] = {
            "type": "TextEncode",
            "inputs": {"clip": ["clip", "clip"], "text": negative},
        }
        nodes["k"]["inputs"]["negative"] = ["neg", "conditioning"]
    if shift is not None:
        nodes["ms"] = {
            "type": "ModelSamplingSD3",
            "inputs": {"model": ["unet", "model"], "shift": shift},
        }
        nodes["k"]["inputs"]["model"] = ["ms", "model"]
    return nodes


def reference(pipe: Any, *, shift: float = 6.0, generator_seed: int = 42, **kwargs: Any) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=shift, use_dynamic_shifting=False)
    pipe.set_progress_bar_config(disable=True)
    # the pipeline scales every request to the area of its default size: make that ours
    pipe.default_sample_size = SIZE // pipe.vae_scale_factor
    kwargs.setdefault("height", SIZE)
    kwargs.setdefault("width", SIZE)
    out = pipe(
        generator=torch.Generator("cpu").manual_seed(generator_seed),
        output_type="np",
        **kwargs,
    ).images
    return as_tensor(out)


def test_hidream_dev_split_files_equal_the_pipeline(hidream_models: Any, run_hidream: Any) -> None:
    pipe, _ = hidream_models
    ours = image_of(run_hidream(workflow(), ["dec"]))
    theirs = reference(pipe, prompt=PROMPT, num_inference_steps=2, guidance_scale=0.0)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_hidream_full_with_cfg_and_a_negative_equals_the_pipeline(
    hidream_models: Any, run_hidream: Any
) -> None:
    """Full's shift (3.0, by the file name) and CFG with a negative prompt, as the pipeline's
    guidance_scale."""
    pipe, _ = hidream_models
    nodes = workflow("hidream_i1_full.safetensors", cfg=5.0, negative=NEGATIVE)
    ours = image_of(run_hidream(nodes, ["dec"]))
    theirs = reference(
        pipe,
        shift=3.0,
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=2,
        guidance_scale=5.0,
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(
    "name,shift",
    [
        ("hidream_i1_full.safetensors", 3.0),
        ("hidream_i1_dev.safetensors", 6.0),
        ("hidream_i1_fast_bf16.safetensors", 3.0),
    ],
)
def test_the_variant_and_its_shift_come_from_the_file_name(
    hidream_models: Any, hidream_manager: Any, name: str, shift: float
) -> None:
    from easel.models import family_files

    _, files = hidream_models
    model = family_files.diffusion_model(name, files["full"], hidream_manager)
    assert model.scheduler_config["shift"] == shift
    assert model.family.pipeline_class == "HiDreamImagePipeline"


def test_model_sampling_sd3_sets_the_shift(hidream_models: Any, run_hidream: Any) -> None:
    pipe, _ = hidream_models
    ours = image_of(run_hidream(workflow(shift=3.0), ["dec"]))
    theirs = reference(pipe, shift=3.0, prompt=PROMPT, num_inference_steps=2, guidance_scale=0.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_text_encode_hidream_gives_each_encoder_its_prompt(
    hidream_models: Any, run_hidream: Any
) -> None:
    """TextEncodeHiDream (ComfyUI's CLIPTextEncodeHiDream) is the pipeline's prompt,
    prompt_2, prompt_3 and prompt_4."""
    pipe, _ = hidream_models
    nodes = workflow()
    texts = {
        "clip_l": "a red circle",
        "clip_g": "a blue square",
        "t5xxl": "a tree",
        "llama": "a cat",
    }
    nodes["pos"] = {"type": "TextEncodeHiDream", "inputs": {"clip": ["clip", "clip"], **texts}}
    ours = image_of(run_hidream(nodes, ["dec"]))
    theirs = reference(
        pipe,
        prompt=texts["clip_l"],
        prompt_2=texts["clip_g"],
        prompt_3=texts["t5xxl"],
        prompt_4=texts["llama"],
        num_inference_steps=2,
        guidance_scale=0.0,
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_a_missing_encoder_is_named(hidream_models: Any, run_hidream: Any) -> None:
    nodes = workflow()
    nodes["clip"]["inputs"]["name4"] = "clip_l_hidream.safetensors"
    result = run_hidream(nodes, ["dec"])
    assert result.status != "succeeded"
    message = str(result.failures)
    assert "third CLIP" in message


@pytest.mark.parametrize("key", ["t5", "llama"])
def test_prompt_weights_move_the_embeddings(
    hidream_models: Any, hidream_manager: Any, key: str
) -> None:
    """A weighted word moves T5's and Llama's hidden states (ComfyUI's rule); the plain
    prompt's equal the pipeline's."""
    from easel.models import hidream_loading
    from easel.models.text import encode_prompts

    _, files = hidream_models
    clip = hidream_loading.hidream_clip(
        "clip",
        [files["clip_l"], files["clip_g"], files["t5"], files["llama"]],
        hidream_manager,
    )
    plain = encode_prompts(clip, dict.fromkeys(("l", "g", "t5", "llama"), "a red circle"))
    weighted = encode_prompts(clip, dict.fromkeys(("l", "g", "t5", "llama"), "a (red:1.5) circle"))
    assert not torch.equal(plain.conditioning[key], weighted.conditioning[key])
    assert torch.equal(plain.conditioning["pooled"], weighted.conditioning["pooled"])


def test_a_diffusers_folder_gives_the_split_files_image(
    hidream_models: Any,
    hidream_root: Any,
    run_hidream: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CheckpointLoader on the diffusers HiDreamImagePipeline folder (dev, by its name) gives
    the split files' image."""
    import os

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [hidream_root / "diffusers", hidream_root / "models", hidream_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = workflow()
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "hidream_i1_dev"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    result = executor.run(
        {"format": "easel.workflow", "version": 1, "nodes": nodes},
        targets=["dec"],
        keep_values=True,
    )
    folder = image_of(result)
    files = image_of(run_hidream(split, ["dec"]))
    assert (folder - files).abs().max().item() <= 1e-5


def test_a_non_square_image_equals_the_pipeline(hidream_models: Any, run_hidream: Any) -> None:
    """A non-square latent is padded to the transformer's largest patch grid with a mask, as
    the pipeline's transformer call pads it (64 x 48 keeps its size under the pipeline's
    area rule at a 64 x 64 default)."""
    pipe, _ = hidream_models
    nodes = workflow()
    nodes["lat"]["inputs"].update(width=64, height=48)
    ours = image_of(run_hidream(nodes, ["dec"]))
    theirs = reference(
        pipe, prompt=PROMPT, num_inference_steps=2, guidance_scale=0.0, width=64, height=48
    )
    assert ours.shape == theirs.shape == (1, 3, 48, 64)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_fp8_weights_run_close_to_full_precision(run_hidream: Any) -> None:
    """weight_dtype fp8_e4m3fn stores the transformer's weights in 8 bits and computes in
    float32: the image stays close to the full-precision one (not equal: the weights are
    rounded)."""
    full = image_of(run_hidream(workflow(), ["dec"]))
    nodes = workflow()
    nodes["unet"]["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    fp8 = image_of(run_hidream(nodes, ["dec"]))
    assert 0.0 < (full - fp8).abs().max().item() < 0.1
