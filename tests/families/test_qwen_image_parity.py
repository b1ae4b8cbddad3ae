"""Qwen-Image from ComfyUI's split files (the transformer, Qwen2.5-VL in its original keys, the
Wan-layout VAE) through Easel's nodes gives diffusers' QwenImagePipeline image (CPU fp32, tiny
random weights, max abs pixel diff 1e-3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import qwen_image_family

qwen_models = qwen_image_family.qwen_models
qwen_manager = qwen_image_family.qwen_manager
run_qwen = qwen_image_family.run_qwen

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"


def split_workflow(
    *, steps: int = 3, size: int = SIZE, shift: float | None = None
) -> dict[str, Any]:
    """ComfyUI's Qwen-Image template shape: UNETLoader, CLIPLoader type qwen_image, VAELoader,
    CLIPTextEncode, EmptySD3LatentImage, KSampler (cfg 1), VAEDecode."""
    nodes: dict[str, Any] = {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "qwen_image.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen_2.5_vl_7b.safetensors", "type": "qwen_image"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "qwen_image_vae.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
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
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }
    return nodes


def reference(pipe: Any, **kwargs: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    kwargs.setdefault("height", SIZE)
    kwargs.setdefault("width", SIZE)
    with torch.no_grad():
        out = pipe(
            generator=torch.Generator("cpu").manual_seed(42), output_type="np", **kwargs
        ).images
    return as_tensor(out)


def test_qwen_image_split_files_equal_qwen_image_pipeline(qwen_models: Any, run_qwen: Any) -> None:
    ours = image_of(run_qwen(split_workflow(), ["dec"]))
    theirs = reference(qwen_models.pipe, prompt=PROMPT, num_inference_steps=3, true_cfg_scale=1.0)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_the_prompt_reaches_the_model(qwen_models: Any, run_qwen: Any) -> None:
    """Another prompt gives another image, the pipeline's for that prompt."""
    nodes = split_workflow()
    nodes["pos"]["inputs"]["text"] = "a green triangle"
    ours = image_of(run_qwen(nodes, ["dec"]))
    theirs = reference(
        qwen_models.pipe, prompt="a green triangle", num_inference_steps=3, true_cfg_scale=1.0
    )
    first = image_of(run_qwen(split_workflow(), ["dec"]))
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    # tiny random weights: the text moves the image a little, far more than the parity error
    assert (ours - first).abs().max().item() > max(100 * error, 1e-4)


def test_latents_are_normalised_per_channel(qwen_models: Any, qwen_manager: Any) -> None:
    """VAELoader's Qwen VAE encodes to (z - latents_mean) / latents_std, as the Edit pipelines
    take image latents, and decodes them back as QwenImagePipeline does."""
    from easel.models.families.qwen_image import LATENTS_MEAN, LATENTS_STD

    vae = qwen_manager.load_vae("qwen_image_vae.safetensors")
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = vae.vae.encode(image * 2 - 1).latent_dist.mode()
        raw = qwen_models.pipe.vae.encode((image * 2 - 1).unsqueeze(2)).latent_dist.mode()
    mean = torch.tensor(LATENTS_MEAN).view(1, 16, 1, 1, 1)
    std = torch.tensor(LATENTS_STD).view(1, 16, 1, 1, 1)
    assert ours.shape == (1, 16, SIZE // 8, SIZE // 8)
    assert torch.allclose(ours, ((raw - mean) / std)[:, :, 0], atol=1e-5)
    with torch.no_grad():
        decoded = vae.vae.decode(ours, return_dict=False)[0]
        expected = qwen_models.pipe.vae.decode(raw, return_dict=False)[0][:, :, 0]
    assert torch.allclose(decoded, expected, atol=1e-5)


@pytest.mark.parametrize("bad", ["qwen_image_vae.safetensors"])
def test_a_vae_file_is_not_a_text_encoder(run_qwen: Any, bad: str, qwen_models: Any) -> None:
    """A file of the wrong kind gets an error naming the node's input, not a traceback."""
    import shutil

    models = qwen_models.root / "models"
    target = models / "text_encoders" / "not_qwen.safetensors"
    shutil.copyfile(models / "vae" / bad, target)
    nodes = split_workflow()
    nodes["clip"]["inputs"]["name"] = "not_qwen.safetensors"
    result = run_qwen(nodes, ["pos"])
    target.unlink()
    assert result.status != "succeeded"
    message = str(result.failures)
    assert "not_qwen.safetensors" in message and "Qwen2.5-VL" in message


def test_diffusers_folder_gives_the_pipeline_image(
    qwen_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CheckpointLoader on a diffusers QwenImagePipeline folder gives the pipeline's image."""
    import os

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    qwen_models.pipe.save_pretrained(str(tmp_path / "qwen-image"), safe_serialization=True)
    roots = [tmp_path]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow()
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "qwen-image"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    ours = image_of(executor.run(workflow, targets=["dec"], keep_values=True))
    theirs = reference(qwen_models.pipe, prompt=PROMPT, num_inference_steps=3, true_cfg_scale=1.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
