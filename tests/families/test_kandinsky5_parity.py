"""Kandinsky 5 (image) from ComfyUI's split files (the transformer in diffusers' keys, Qwen2.5-VL
in its original keys, CLIP-L, the Flux VAE) through Easel's nodes gives diffusers'
Kandinsky5T2IPipeline image (CPU fp32, tiny random weights, max abs pixel diff 1e-3).

Two settings of the pipeline are made to fit the tiny models: its list of supported
resolutions (it snaps any other size to one of them, all of 640 pixels and more) holds the test
size, and its count of template tokens to drop (40 with Qwen's real tokenizer) is the tiny
tokenizer's. The pipeline draws its noise channels-last: it is handed Easel's noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import kandinsky5_family

kandinsky5_models = kandinsky5_family.kandinsky5_models
kandinsky5_manager = kandinsky5_family.kandinsky5_manager
run_kandinsky5 = kandinsky5_family.run_kandinsky5

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square &amp; a  green line"


def split_workflow(*, steps: int = 3, cfg: float = 3.5, negative: str = "") -> dict[str, Any]:
    """ComfyUI's Kandinsky 5 template shape: UNETLoader, DualCLIPLoader type kandinsky5_image,
    VAELoader, CLIPTextEncode x2, EmptyLatentImage, KSampler, VAEDecode."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "kandinsky5lite_t2i.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "DualTextEncoderLoader",
            "inputs": {
                "name1": "qwen_2.5_vl_7b.safetensors",
                "name2": "clip_l.safetensors",
                "type": "kandinsky5_image",
            },
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
                "scheduler": "normal",  # the scheduler's own sigmas, as the pipeline's
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }


def reference(pipe: Any, **kwargs: Any) -> Any:
    from easel.models.families.kandinsky5 import PROMPT_TEMPLATE
    from easel.models.qwen_text import template_tokens

    pipe.set_progress_bar_config(disable=True)
    pipe.resolutions = [(SIZE, SIZE)]
    pipe.prompt_template_encode_start_idx = template_tokens(
        pipe.tokenizer.tokenizer, PROMPT_TEMPLATE
    )
    noise = torch.randn(
        (1, 16, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(42)
    )
    with torch.no_grad():
        out = pipe(
            height=SIZE,
            width=SIZE,
            latents=noise.permute(0, 2, 3, 1).unsqueeze(1),
            output_type="np",
            **kwargs,
        ).image
    return as_tensor(out)


def test_kandinsky5_split_files_equal_kandinsky5_t2i_pipeline(
    kandinsky5_models: Any, run_kandinsky5: Any
) -> None:
    """With CFG (3.5, the template's) and an empty negative prompt, as the pipeline's default."""
    ours = image_of(run_kandinsky5(split_workflow(), ["dec"]))
    theirs = reference(
        kandinsky5_models.pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=3.5
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_two_clip_l_files_are_not_a_kandinsky5_clip(run_kandinsky5: Any) -> None:
    """DualCLIPLoader type kandinsky5_image takes a Qwen2.5-VL and a CLIP-L file: two CLIP-L
    files get an error naming both files and what is expected."""
    nodes = split_workflow()
    nodes["clip"]["inputs"]["name1"] = "clip_l.safetensors"
    result = run_kandinsky5(nodes, ["pos"])
    assert result.status != "succeeded"
    message = str(result.failures)
    assert "clip_l.safetensors" in message and "Qwen2.5-VL" in message


@pytest.mark.slow
def test_diffusers_folder_gives_the_pipeline_image(
    kandinsky5_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saved Kandinsky5T2IPipeline folder loads with CheckpointLoader (its processor's
    tokenizer, both text encoders, the Flux VAE decoded without shift) and gives its image."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    kandinsky5_models.pipe.save_pretrained(str(tmp_path / "kandinsky5"), safe_serialization=True)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow()
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "kandinsky5"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": ""}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    ours = image_of(executor.run(workflow, targets=["dec"], keep_values=True))
    theirs = reference(
        kandinsky5_models.pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=3.5
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE
