"""Qwen-Image 2.1 from ComfyUI's split files (the fused-MLP transformer, Qwen3-VL, the original
layout RGBA VAE) through Easel's nodes gives diffusers' QwenImage21Pipeline image (CPU fp32,
tiny random weights, max abs pixel diff 1e-3, all four channels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import as_tensor, image_of
from tests.fixtures import qwen_image21_family

qwen21_models = qwen_image21_family.qwen21_models
qwen21_manager = qwen_image21_family.qwen21_manager
run_qwen21 = qwen_image21_family.run_qwen21

TOLERANCE = 1e-3
SIZE = 64  # pixels: latents 4x4 (factor 16), two text-encoder slots' worth of 2x2 tokens
PROMPT = "a red circle on a blue square"


def split_workflow(
    *, steps: int = 3, cfg: float = 1.0, negative: str = "", cache: str | None = None
) -> dict[str, Any]:
    """ComfyUI's Qwen-Image 2.1 template's shape: UNETLoader, QwenImage21Cache, CLIPLoader type
    qwen_image, VAELoader, TextEncodeQwenImage21, EmptyLatentImage, KSampler, VAEDecode."""
    model: list[str] = ["unet", "model"]
    nodes: dict[str, Any] = {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "qwen_image_2.1.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen3vl_8b.safetensors", "type": "qwen_image"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "qwen_image_2.1_vae.safetensors"}},
        "enc": {
            "type": "TextEncodeQwenImage21",
            "inputs": {
                "clip": ["clip", "clip"],
                "prompt": PROMPT,
                "negative_prompt": negative,
                "resolution": 1024,
            },
        },
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": model,
                "positive": ["enc", "positive"],
                "negative": ["enc", "negative"],
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
    if cache is not None:
        nodes["cache"] = {
            "type": "QwenImage21Cache",
            "inputs": {"model": ["unet", "model"], "device": cache, "dtype": "default"},
        }
        nodes["k"]["inputs"]["model"] = ["cache", "model"]
    return nodes


def reference(pipe: Any, **kwargs: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = pipe(
            height=SIZE,
            width=SIZE,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type="np",
            **kwargs,
        ).images
    return as_tensor(out)


def test_split_files_equal_qwen_image21_pipeline(qwen21_models: Any, run_qwen21: Any) -> None:
    ours = image_of(run_qwen21(split_workflow(), ["dec"]))
    theirs = reference(qwen21_models.pipe, prompt=PROMPT, num_inference_steps=3)
    assert ours.shape == theirs.shape == (1, 4, SIZE, SIZE)  # RGBA, as the pipeline's
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_true_cfg_with_a_negative_prompt(qwen21_models: Any, run_qwen21: Any) -> None:
    """cfg 4 with a negative prompt is the pipeline's true_cfg_scale 4 (each side its own call
    and its own prefix cache)."""
    nodes = split_workflow(cfg=4.0, negative="blurry")
    ours = image_of(run_qwen21(nodes, ["dec"]))
    theirs = reference(
        qwen21_models.pipe,
        prompt=PROMPT,
        negative_prompt="blurry",
        true_cfg_scale=4.0,
        num_inference_steps=3,
    )
    plain = image_of(run_qwen21(split_workflow(), ["dec"]))
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    assert (ours - plain).abs().max().item() > max(100 * error, 1e-4)


def test_the_prompt_reaches_the_model(qwen21_models: Any, run_qwen21: Any) -> None:
    nodes = split_workflow()
    nodes["enc"]["inputs"]["prompt"] = "a green triangle"
    ours = image_of(run_qwen21(nodes, ["dec"]))
    theirs = reference(qwen21_models.pipe, prompt="a green triangle", num_inference_steps=3)
    first = image_of(run_qwen21(split_workflow(), ["dec"]))
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    assert (ours - first).abs().max().item() > max(100 * error, 1e-4)


def test_cache_off_gives_the_same_image(qwen21_models: Any, run_qwen21: Any) -> None:
    """QwenImage21Cache device "off" recomputes the prefix at every step: the same image as the
    cached run and as the pipeline's use_kv_cache=False (CPU fp32)."""
    cached = image_of(run_qwen21(split_workflow(cache="auto"), ["dec"]))
    off = image_of(run_qwen21(split_workflow(cache="off"), ["dec"]))
    theirs = reference(qwen21_models.pipe, prompt=PROMPT, num_inference_steps=3, use_kv_cache=False)
    assert (off - theirs).abs().max().item() <= TOLERANCE
    assert (cached - off).abs().max().item() <= TOLERANCE


EDIT_SIZE = 288  # Qwen3-VL's image processor takes at least 65,536 pixels an image


def _picture(seed: int, size: tuple[int, int]) -> Any:
    import numpy as np
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return PILImage.fromarray(pixels, "RGB")


def edit_workflow(paths: list[Path], *, resolution: int = EDIT_SIZE) -> dict[str, Any]:
    """ComfyUI's Qwen-Image 2.1 edit template's shape: the images into TextEncodeQwenImage21
    with the VAE, its latent sampled (the template's switch on the encoder's latent)."""
    nodes = split_workflow()
    enc = nodes["enc"]["inputs"]
    enc["vae"] = ["vae", "vae"]
    enc["resolution"] = resolution
    enc["prompt"] = "make it blue"
    for i, path in enumerate(paths, start=1):
        nodes[f"img{i}"] = {"type": "LoadImage", "inputs": {"image": str(path)}}
        enc[f"image_{i}"] = [f"img{i}", "image"]
    del nodes["lat"]
    nodes["k"]["inputs"]["latent"] = ["enc", "latent"]
    return nodes


def test_edit_with_reference_images_equals_the_pipeline(
    qwen21_models: Any, run_qwen21: Any, tmp_path: Path
) -> None:
    """Two reference images (the second of another aspect) seen by Qwen3-VL's vision tower and
    spliced in as latents: QwenImage21Pipeline's image for the same images (the second resized
    by both to about resolution^2 pixels at multiples of 32: 384 x 224)."""
    pictures = [_picture(1, (EDIT_SIZE, EDIT_SIZE)), _picture(2, (320, 192))]
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(tmp_path / f"ref{i}.png")
        picture.save(paths[-1])
    result = run_qwen21(edit_workflow(paths), ["dec", "enc"])
    ours = image_of(result)
    assert result.values["enc"]["latent"]["samples"].shape == (1, 64, 18, 18)  # the first
    pipe = qwen21_models.pipe
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = pipe(
            prompt="make it blue",
            image=pictures,
            output_resolution=EDIT_SIZE,
            height=EDIT_SIZE,
            width=EDIT_SIZE,
            num_inference_steps=3,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type="np",
        ).images
    theirs = as_tensor(out)
    assert ours.shape == theirs.shape == (1, 4, EDIT_SIZE, EDIT_SIZE)
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    # the references reach the model: without them (text to image) the image differs
    plain = split_workflow()
    plain["enc"]["inputs"]["prompt"] = "make it blue"
    plain["lat"]["inputs"].update(width=EDIT_SIZE, height=EDIT_SIZE)
    text_only = image_of(run_qwen21(plain, ["dec"]))
    assert (ours - text_only).abs().max().item() > max(100 * error, 1e-4)


def test_diffusers_folder_gives_the_pipeline_image(
    qwen21_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CheckpointLoader on a diffusers QwenImage21Pipeline folder gives the pipeline's image."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    qwen21_models.pipe.save_pretrained(str(tmp_path / "qwen-image-2.1"), safe_serialization=True)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow()
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "qwen-image-2.1"}},
        "enc": {
            "type": "TextEncodeQwenImage21",
            "inputs": {**split["enc"]["inputs"], "clip": ["ckpt", "clip"]},
        },
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    ours = image_of(executor.run(workflow, targets=["dec"], keep_values=True))
    theirs = reference(qwen21_models.pipe, prompt=PROMPT, num_inference_steps=3)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
