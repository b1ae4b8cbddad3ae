"""Single-file checkpoints of each Stable Diffusion family, with nothing beside them, give the
matching diffusers pipeline's image (CPU fp32, tiny random weights, max abs pixel diff 1e-3)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of, txt2img

TOLERANCE = 1e-3


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


@pytest.mark.parametrize("family", ["sd1", "sd2-v"])
def test_sd_text_to_image(family: str, sd_models: Any, run_sd: Any) -> None:
    built = sd_models(family)
    ours = image_of(run_sd(txt2img(f"{family}.safetensors"), ["dec"]))
    theirs = reference(
        built.pipe,
        prompt="a red circle",
        negative_prompt="blue",
        num_inference_steps=3,
        guidance_scale=5.0,
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01  # a real image, not a constant
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_sd2_v_is_told_from_the_file(sd_models: Any, sd_manager: Any) -> None:
    sd_models("sd2")
    sd_models("sd2-v")
    eps, _, _ = sd_manager.load_checkpoint("sd2.safetensors")
    v, _, _ = sd_manager.load_checkpoint("sd2-v.safetensors")
    assert (eps.family.name, eps.scheduler_config["prediction_type"]) == ("sd2", "epsilon")
    assert (v.family.name, v.scheduler_config["prediction_type"]) == ("sd2-v", "v_prediction")


def test_sdxl_text_to_image(sd_models: Any, run_sd: Any) -> None:
    built = sd_models("sdxl")
    ours = image_of(run_sd(txt2img("sdxl.safetensors"), ["dec"]))
    theirs = reference(
        built.pipe,
        prompt="a red circle",
        negative_prompt="blue",
        num_inference_steps=3,
        guidance_scale=5.0,
    )
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_single_file_equals_diffusers_folder(
    sd_models: Any, sd_root: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same weights as a diffusers folder and as a single file: identical images."""
    import os

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    built = sd_models("sdxl")
    roots = [sd_root / "diffusers", sd_root / "models", sd_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    images = []
    for name in ("sdxl", "sdxl.safetensors"):
        nodes = txt2img(name)
        result = executor.run(
            {"format": "easel.workflow", "version": 1, "nodes": nodes},
            targets=["dec"],
            keep_values=True,
        )
        images.append(image_of(result))
    assert built.folder.is_dir()
    assert torch.equal(images[0], images[1])


def test_sdxl_base_then_refiner(sd_models: Any, run_sd: Any) -> None:
    """KSamplerAdvanced splits one schedule between base and refiner, exactly as diffusers'
    denoising_end / denoising_start do (StableDiffusionXLImg2ImgPipeline)."""
    base, refiner = sd_models("sdxl"), sd_models("sdxl-refiner")
    sampler = {"seed": 42, "steps": 10, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal"}
    nodes = {
        "base": {"type": "CheckpointLoader", "inputs": {"name": "sdxl.safetensors"}},
        "ref": {"type": "CheckpointLoader", "inputs": {"name": "sdxl-refiner.safetensors"}},
        "bp": {"type": "TextEncode", "inputs": {"clip": ["base", "clip"], "text": "a cat"}},
        "bn": {"type": "TextEncode", "inputs": {"clip": ["base", "clip"], "text": "blue"}},
        "rp": {"type": "TextEncode", "inputs": {"clip": ["ref", "clip"], "text": "a cat"}},
        "rn": {"type": "TextEncode", "inputs": {"clip": ["ref", "clip"], "text": "blue"}},
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "k1": {
            "type": "KSamplerAdvanced",
            "inputs": {
                "model": ["base", "model"],
                "positive": ["bp", "conditioning"],
                "negative": ["bn", "conditioning"],
                "latent": ["lat", "latent"],
                "add_noise": True,
                "start_at_step": 0,
                "end_at_step": 8,
                "return_with_leftover_noise": True,
                **sampler,
            },
        },
        "k2": {
            "type": "KSamplerAdvanced",
            "inputs": {
                "model": ["ref", "model"],
                "positive": ["rp", "conditioning"],
                "negative": ["rn", "conditioning"],
                "latent": ["k1", "latent"],
                "add_noise": False,
                "start_at_step": 8,
                "end_at_step": 10000,
                "return_with_leftover_noise": False,
                **sampler,
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ref", "vae"], "latent": ["k2", "latent"]}},
    }
    ours = image_of(run_sd(nodes, ["dec"]))

    base.pipe.set_progress_bar_config(disable=True)
    latents = base.pipe(
        "a cat",
        negative_prompt="blue",
        height=SIZE,
        width=SIZE,
        num_inference_steps=10,
        guidance_scale=5.0,
        denoising_end=0.8,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="latent",
    ).images
    refiner.pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        refiner.pipe(
            "a cat",
            negative_prompt="blue",
            image=latents,
            num_inference_steps=10,
            guidance_scale=5.0,
            denoising_start=0.8,
            output_type="np",
        ).images
    )
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def _inpaint_inputs(folder: Any) -> tuple[Any, Any, Any]:
    """A 64x64 test picture whose left half is transparent (the mask, 8-pixel aligned so that
    diffusers' nearest and ComfyUI's bilinear mask downscaling agree), and its PIL parts."""
    import numpy as np
    from PIL import Image as PILImage

    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    alpha = np.where(x < SIZE // 2, 0, 255).astype(np.uint8)
    path = folder / "picture.png"
    PILImage.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    mask = PILImage.fromarray(np.where(alpha == 0, 255, 0).astype(np.uint8), "L")
    return path, PILImage.fromarray(rgb, "RGB"), mask


def test_inpainting_model(sd_models: Any, run_sd: Any, tmp_path: Any) -> None:
    """A 9-channel inpainting UNet through InpaintModelConditioning equals diffusers'
    StableDiffusionInpaintPipeline."""
    built = sd_models("sd1-inpaint")
    path, picture, mask = _inpaint_inputs(tmp_path)
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "sd1-inpaint.safetensors"}},
        "img": {"type": "LoadImage", "inputs": {"image": str(path)}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": "a cat"}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": "blue"}},
        "cond": {
            "type": "InpaintModelConditioning",
            "inputs": {
                "vae": ["ckpt", "vae"],
                "image": ["img", "image"],
                "mask": ["img", "mask"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "noise_mask": False,
            },
        },
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["ckpt", "model"],
                "positive": ["cond", "positive"],
                "negative": ["cond", "negative"],
                "latent": ["cond", "latent"],
                "seed": 42,
                "steps": 3,
                "cfg": 5.0,
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    ours = image_of(run_sd(nodes, ["dec"]))
    theirs = reference(
        built.pipe,
        prompt="a cat",
        negative_prompt="blue",
        image=picture,
        mask_image=mask,
        num_inference_steps=3,
        guidance_scale=5.0,
        strength=1.0,
    )
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_inpainting_with_noise_mask(sd_models: Any, run_sd: Any, tmp_path: Any) -> None:
    """An ordinary UNet inpaints through a latent noise mask as diffusers'
    StableDiffusionInpaintPipeline does for 4-channel UNets."""
    from diffusers import StableDiffusionInpaintPipeline

    built = sd_models("sd1")
    path, picture, mask = _inpaint_inputs(tmp_path)
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "sd1.safetensors"}},
        "img": {"type": "LoadImage", "inputs": {"image": str(path)}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": "a cat"}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": "blue"}},
        "enc": {"type": "VAEEncode", "inputs": {"vae": ["ckpt", "vae"], "image": ["img", "image"]}},
        "masked": {
            "type": "SetLatentNoiseMask",
            "inputs": {"latent": ["enc", "latent"], "mask": ["img", "mask"]},
        },
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["ckpt", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "latent": ["masked", "latent"],
                "seed": 42,
                "steps": 3,
                "cfg": 5.0,
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    ours = image_of(run_sd(nodes, ["dec"]))
    pipe = StableDiffusionInpaintPipeline(**built.pipe.components)
    # diffusers draws the image latents before the noise: hand it Easel's noise
    noise = torch.randn(
        (1, 4, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(42)
    )
    theirs = reference(
        pipe,
        prompt="a cat",
        negative_prompt="blue",
        image=picture,
        mask_image=mask,
        num_inference_steps=3,
        guidance_scale=5.0,
        strength=1.0,
        latents=noise,
    )
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    left = (ours - theirs)[..., : SIZE // 2].abs().max()
    assert left <= TOLERANCE
