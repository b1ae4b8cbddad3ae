"""Z-Image from ComfyUI's split files (the transformer in the original keys, a Qwen3 text
encoder, the Flux VAE) through Easel's nodes gives diffusers' ZImagePipeline image (CPU fp32,
tiny random weights, max abs pixel difference 1e-3); a diffusers ZImagePipeline folder gives
the same image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, custom_sampling, image_of
from tests.fixtures import lumina_family

lumina_root = lumina_family.lumina_root
lumina_models = lumina_family.lumina_models
lumina_manager = lumina_family.lumina_manager
run_lumina = lumina_family.run_lumina

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"


def split_workflow(*, steps: int = 3, cfg: float = 1.0, shift: float | None = None) -> Any:
    """ComfyUI's Z-Image Turbo template shape: UNETLoader, CLIPLoader type lumina2,
    VAELoader, CLIPTextEncode, EmptySD3LatentImage, KSampler, VAEDecode."""
    nodes: dict[str, Any] = {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "z_image_turbo_bf16.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen_3_4b.safetensors", "type": "lumina2"},
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
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }
    if shift is not None:
        nodes["ms"] = {
            "type": "ModelSamplingAuraFlow",
            "inputs": {"model": ["unet", "model"], "shift": shift},
        }
        nodes["k"]["inputs"]["model"] = ["ms", "model"]
    return nodes


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


def test_turbo_split_files_equal_zimage_pipeline(lumina_models: Any, run_lumina: Any) -> None:
    """cfg 1 (Z-Image Turbo's templates) is the pipeline's guidance_scale 0."""
    ours = image_of(run_lumina(split_workflow(), ["dec"]))
    theirs = reference(
        lumina_models["z-image"].pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=0.0
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_cfg_with_a_negative_equals_the_pipeline_guidance(
    lumina_models: Any, run_lumina: Any
) -> None:
    """ZImagePipeline's guidance_scale g is pos + g (pos - neg): KSampler's cfg g + 1."""
    nodes = split_workflow(cfg=3.0)
    nodes["neg"] = {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": "blurry"}}
    nodes["k"]["inputs"]["negative"] = ["neg", "conditioning"]
    ours = image_of(run_lumina(nodes, ["dec"]))
    pipe = lumina_models["z-image"].pipe
    theirs = reference(
        pipe, prompt=PROMPT, negative_prompt="blurry", num_inference_steps=3, guidance_scale=2.0
    )
    unguided = reference(pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=0.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (theirs - unguided).abs().max().item() > 10 * TOLERANCE


def test_model_sampling_aura_flow_sets_the_shift(lumina_models: Any, run_lumina: Any) -> None:
    """ModelSamplingAuraFlow 3 is Z-Image's own shift; another shift is the pipeline with a
    scheduler of that shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline

    same = image_of(run_lumina(split_workflow(shift=3.0), ["dec"]))
    plain = image_of(run_lumina(split_workflow(), ["dec"]))
    assert (same - plain).abs().max().item() <= 1e-5
    ours = image_of(run_lumina(split_workflow(shift=7.0), ["dec"]))
    pipe = lumina_models["z-image"].pipe
    shifted = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0, use_dynamic_shifting=False),
        **{k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "transformer")},
    )
    theirs = reference(shifted, prompt=PROMPT, num_inference_steps=3, guidance_scale=0.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (ours - plain).abs().max().item() > 10 * TOLERANCE


def test_diffusers_folder_gives_the_same_image(
    lumina_models: Any, lumina_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CheckpointLoader on the diffusers ZImagePipeline folder equals the split files."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [lumina_root / "diffusers", lumina_root / "models", lumina_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow()
    folder = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "z-image"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    images = [
        image_of(
            executor.run(
                {"format": "easel.workflow", "version": 1, "nodes": nodes},
                targets=["dec"],
                keep_values=True,
            )
        )
        for nodes in (split, folder)
    ]
    assert (images[0] - images[1]).abs().max().item() <= 1e-5


def test_single_file_with_every_part_gives_the_same_image(
    lumina_models: Any, lumina_root: Path, run_lumina: Any
) -> None:
    """A Z-Image checkpoint in ComfyUI's all-in-one layout (CheckpointLoaderSimple) equals the
    split files."""
    lumina_family.write_checkpoint(lumina_models["z-image"], lumina_root, "z-image-all.safetensors")
    split = split_workflow()
    single = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "z-image-all.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    images = [image_of(run_lumina(nodes, ["dec"])) for nodes in (split, single)]
    assert (images[0] - images[1]).abs().max().item() <= 1e-5


def test_fp8_weights_run_close_to_full_precision(run_lumina: Any) -> None:
    """weight_dtype fp8_e4m3fn stores the transformer's weights in 8 bits and computes in
    float32: the image stays close to the full-precision one (not equal: the weights are
    rounded)."""
    full = image_of(run_lumina(split_workflow(), ["dec"]))
    nodes = split_workflow()
    nodes["unet"]["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    fp8 = image_of(run_lumina(nodes, ["dec"]))
    assert 0.0 < (full - fp8).abs().max().item() < 0.1


def test_custom_sampling_with_cfg_guider_equals_ksampler(run_lumina: Any) -> None:
    """ComfyUI's SamplerCustomAdvanced (RandomNoise, CFGGuider with a negative, KSamplerSelect
    euler, BasicScheduler simple: Z-Image's shifted sigmas) gives KSampler's image."""
    nodes = split_workflow(cfg=3.0)
    nodes["neg"] = {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": "blurry"}}
    nodes["k"]["inputs"]["negative"] = ["neg", "conditioning"]
    ksampler = image_of(run_lumina(nodes, ["dec"]))
    custom = custom_sampling(nodes, cfg=3.0)
    ours = image_of(run_lumina(custom, ["dec"]))
    assert float(ours.std()) > 0.01
    assert (ours - ksampler).abs().max().item() <= 1e-4


def test_image_to_image_equals_zimage_img2img_pipeline(
    lumina_models: Any, run_lumina: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VAEEncode -> KSampler at denoise 0.5 (2 steps of a 4-step schedule) equals
    ZImageImg2ImgPipeline at strength 0.5 of 4 steps."""
    import numpy as np
    from diffusers import ZImageImg2ImgPipeline
    from diffusers.pipelines.z_image import pipeline_z_image_img2img
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
    ours = image_of(run_lumina(nodes, ["dec"]))
    # the pipeline samples the image's latent with the generator before drawing the noise;
    # the tiny VAE's posterior is (near) deterministic, so take its mode and keep the noise
    monkeypatch.setattr(
        pipeline_z_image_img2img,
        "retrieve_latents",
        lambda output, generator=None, sample_mode="sample": output.latent_dist.mode(),
    )
    pipe = lumina_models["z-image"].pipe
    img2img = ZImageImg2ImgPipeline(
        **{k: getattr(pipe, k) for k in ("scheduler", "vae", "text_encoder", "tokenizer")},
        transformer=pipe.transformer,
    )
    theirs = reference(
        img2img,
        prompt=PROMPT,
        image=picture,
        strength=0.5,
        num_inference_steps=4,
        guidance_scale=0.0,
    )
    plain = image_of(run_lumina(split_workflow(steps=2), ["dec"]))
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (ours - plain).abs().max().item() > 10 * TOLERANCE  # the input image is seen


def test_a_batch_of_two_with_cfg_equals_the_pipeline(lumina_models: Any, run_lumina: Any) -> None:
    """Two images at once (one latent and one caption per image in the model's lists), with
    classifier-free guidance, equal the pipeline's num_images_per_prompt=2."""
    nodes = split_workflow(cfg=3.0)
    nodes["neg"] = {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": "blurry"}}
    nodes["k"]["inputs"]["negative"] = ["neg", "conditioning"]
    nodes["lat"]["inputs"]["batch_size"] = 2
    ours = image_of(run_lumina(nodes, ["dec"]))
    theirs = reference(
        lumina_models["z-image"].pipe,
        prompt=PROMPT,
        negative_prompt="blurry",
        num_images_per_prompt=2,
        num_inference_steps=3,
        guidance_scale=2.0,
    )
    assert ours.shape == theirs.shape == (2, 3, SIZE, SIZE)
    assert (ours[0] - ours[1]).abs().max().item() > 10 * TOLERANCE
    assert (ours - theirs).abs().max().item() <= TOLERANCE
