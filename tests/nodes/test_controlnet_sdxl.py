"""An SDXL ControlNet in the original layout (bare keys, SDXL's label_emb, the 8x hint encoder
of released ControlNets) on an SDXL single file, both with nothing beside them, gives the image
of diffusers' StableDiffusionXLControlNetPipeline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.fixtures.sd_family import build, write_comfy_tokenizer
from tests.models.test_controlnet_loading import randomise, write_single_file

SIZE = 64  # pixels; latents 8x8 (VAE factor 8), the hint encoder's factor 8


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: see tests/models/test_controlnet_loading.py
    yield
    torch.set_num_threads(before)


def test_sdxl_controlnet_single_file_matches_the_diffusers_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import ControlNetModel, EulerDiscreteScheduler
    from diffusers import StableDiffusionXLControlNetPipeline as Pipeline
    from PIL import Image

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    write_comfy_tokenizer(tmp_path / "ComfyUI")  # where a single file's tokenizer comes from
    built = build("sdxl", tmp_path)
    net = randomise(ControlNetModel.from_unet(built.pipe.unet), seed=40)
    assert net.config.conditioning_embedding_out_channels == (16, 32, 96, 256)
    path = write_single_file(
        net, tmp_path / "models" / "controlnet" / "xl" / "canny.safetensors", "bare"
    )
    assert os.listdir(path.parent) == ["canny.safetensors"]
    hint = tmp_path / "edges.png"
    pixels = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(hint)

    roots = [tmp_path / "models", tmp_path / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "sdxl.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": "a red circle"}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": "blue"}},
        "cn": {"type": "ControlNetLoader", "inputs": {"name": "xl/canny.safetensors"}},
        "hint": {"type": "LoadImage", "inputs": {"image": str(hint)}},
        "apply": {
            "type": "ControlNetApplyAdvanced",
            "inputs": {
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "control_net": ["cn", "control_net"],
                "image": ["hint", "image"],
                "strength": 0.7,
            },
        },
        "lat": {
            "type": "EmptyLatent",
            "inputs": {"width": SIZE, "height": SIZE, "vae": ["ckpt", "vae"]},
        },
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["ckpt", "model"],
                "positive": ["apply", "positive"],
                "negative": ["apply", "negative"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": 3,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    result = executor.run(
        {"format": "easel.workflow", "version": 1, "nodes": nodes},
        targets=["dec"],
        keep_values=True,
    )
    assert result.status == "succeeded", result.failures
    ours = result.values["dec"]["image"]

    components = {
        k: v
        for k, v in built.pipe.components.items()
        if k in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet")
    }
    pipe = Pipeline(
        **components,
        controlnet=net,
        scheduler=EulerDiscreteScheduler.from_config(built.pipe.scheduler.config),
    )
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        "a red circle",
        negative_prompt="blue",
        image=Image.open(hint).convert("RGB"),
        height=SIZE,
        width=SIZE,
        num_inference_steps=3,
        guidance_scale=5.0,
        controlnet_conditioning_scale=0.7,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
    ).images
    theirs = torch.from_numpy(theirs).permute(0, 3, 1, 2)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert (ours - theirs).abs().max().item() <= 1e-3
    plain = built.pipe(
        "a red circle",
        negative_prompt="blue",
        height=SIZE,
        width=SIZE,
        num_inference_steps=3,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
    ).images
    assert (ours - torch.from_numpy(plain).permute(0, 3, 1, 2)).abs().max().item() > 1e-2
