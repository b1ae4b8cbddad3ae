"""Ovis-Image from ComfyUI's split files (the transformer in Black Forest Labs' keys with
ComfyUI's SwiGLU MLPs, Ovis 2.5's Qwen3, the Flux VAE) through Easel's nodes gives diffusers'
OvisImagePipeline image (CPU fp32, tiny random weights, max abs pixel diff 1e-3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import ovis_family

ovis_models = ovis_family.ovis_models
ovis_manager = ovis_family.ovis_manager
run_ovis = ovis_family.run_ovis

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"


def split_workflow(*, steps: int = 3, cfg: float = 1.0, negative: str = "") -> dict[str, Any]:
    """ComfyUI's Ovis-Image template shape: UNETLoader, CLIPLoader type ovis, VAELoader,
    CLIPTextEncode (both sides), EmptySD3LatentImage, KSampler, VAEDecode."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "ovis_image.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "ovis_2.5.safetensors", "type": "ovis"},
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
            **kwargs,
        ).images
    return as_tensor(out)


def test_ovis_split_files_equal_ovis_image_pipeline(ovis_models: Any, run_ovis: Any) -> None:
    ours = image_of(run_ovis(split_workflow(), ["dec"]))
    theirs = reference(ovis_models.pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=1.0)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_cfg_with_a_negative_equals_the_pipeline(ovis_models: Any, run_ovis: Any) -> None:
    nodes = split_workflow(cfg=5.0, negative="blurry")
    ours = image_of(run_ovis(nodes, ["dec"]))
    theirs = reference(
        ovis_models.pipe,
        prompt=PROMPT,
        negative_prompt="blurry",
        num_inference_steps=3,
        guidance_scale=5.0,
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_the_prompt_reaches_the_model(ovis_models: Any, run_ovis: Any) -> None:
    nodes = split_workflow()
    nodes["pos"]["inputs"]["text"] = "a green triangle"
    ours = image_of(run_ovis(nodes, ["dec"]))
    theirs = reference(
        ovis_models.pipe, prompt="a green triangle", num_inference_steps=3, guidance_scale=1.0
    )
    first = image_of(run_ovis(split_workflow(), ["dec"]))
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    assert (ours - first).abs().max().item() > max(100 * error, 1e-4)


def test_the_file_is_ovis_not_longcat_or_flux(ovis_models: Any) -> None:
    from easel.models import family_files
    from easel.models.families import flux, longcat, ovis

    path = ovis_models.root / "models" / ovis_family.FILES["transformer"]
    keys = family_files.header(path)
    assert keys is not None
    found = ovis.recognise(keys)
    assert found is not None and found[0] is ovis.OVIS
    assert longcat.recognise(keys) is None
    order = list(family_files.DIFFUSION_MODELS)
    assert order.index("easel.models.ovis_loading") < order.index("easel.models.flux_loading")
    assert flux.recognise(keys) is not None  # why Ovis must be asked first


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_either_key_layout_builds_the_pipeline_transformer(
    ovis_models: Any, prefix: str, tmp_path: Path
) -> None:
    from easel.models.ovis_loading import build_transformer

    model = ovis_models.pipe.transformer
    expected = model.state_dict()
    for state in (
        ovis_family.transformer_file(model, prefix),
        {prefix + k: v for k, v in expected.items()},
    ):
        built = build_transformer(state, torch.float32, tmp_path / "x.safetensors")
        got = built.state_dict()
        assert set(got) == set(expected)
        for key, value in expected.items():
            assert torch.equal(got[key], value), key


def test_a_vae_file_is_not_a_text_encoder(run_ovis: Any, ovis_models: Any) -> None:
    import shutil

    models = ovis_models.root / "models"
    target = models / "text_encoders" / "not_ovis.safetensors"
    shutil.copyfile(models / "vae" / "ae.safetensors", target)
    nodes = split_workflow()
    nodes["clip"]["inputs"]["name"] = "not_ovis.safetensors"
    result = run_ovis(nodes, ["pos"])
    target.unlink()
    assert result.status != "succeeded"
    message = str(result.failures)
    assert "not_ovis.safetensors" in message and "Qwen3" in message


def test_diffusers_folder_gives_the_pipeline_image(
    ovis_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    ovis_models.pipe.save_pretrained(str(tmp_path / "ovis"), safe_serialization=True)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow()
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "ovis"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    del nodes["k"]["inputs"]["negative"]
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    ours = image_of(executor.run(workflow, targets=["dec"], keep_values=True))
    theirs = reference(ovis_models.pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=1.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
