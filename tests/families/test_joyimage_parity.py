"""JoyImage Edit from ComfyUI's split files (the transformer in diffusers' keys, Qwen3-VL with its
vision tower, the Wan 2.1 VAE in the Wan layout) through Easel's nodes (TextEncodeJoyImageEdit
with a reference image, KSampler, VAEDecode) gives diffusers' JoyImageEditPipeline image (CPU
fp32, tiny random weights, max abs pixel diff 1e-3).

Fitted to the tiny models: the pipeline's size bucket (it picks among sizes of about 1024x1024
pixels) is the test size, as the node's `base` makes it; its count of template tokens to drop
(34 with Qwen's tokenizer) is the tiny tokenizer's; it is handed Easel's noise. Guidance 1: the
pipeline's CFG always rescales to the conditional prediction's norm, which KSampler's CFG does
not (ComfyUI's template adds CFGNorm for it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import joyimage_family

joyimage_models = joyimage_family.joyimage_models
joyimage_manager = joyimage_family.joyimage_manager
run_joyimage = joyimage_family.run_joyimage

TOLERANCE = 1e-3
PROMPT = "make the circle red"


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    from PIL import Image

    generator = torch.Generator().manual_seed(11)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8).numpy()
    path = tmp_path / "input.png"
    Image.fromarray(pixels, "RGB").save(path)
    return path


def workflow(picture: Path, *, steps: int = 3) -> dict[str, Any]:
    """ComfyUI's JoyImage Edit template shape at cfg 1: UNETLoader, CLIPLoader type joyimage,
    VAELoader, LoadImage, TextEncodeJoyImageEdit, EmptySD3LatentImage, KSampler, VAEDecode."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "joyimage_edit.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen3vl_8b_joyimage_edit.safetensors", "type": "joyimage"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "wan_2.1_vae.safetensors"}},
        "img": {"type": "LoadImage", "inputs": {"image": str(picture)}},
        "pos": {
            "type": "TextEncodeJoyImageEdit",
            "inputs": {
                "clip": ["clip", "clip"],
                "vae": ["vae", "vae"],
                "image0": ["img", "image"],
                "prompt": PROMPT,
                "base": SIZE,
            },
        },
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["pos", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "normal",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }


def reference(pipe: Any, picture: Path, steps: int = 3) -> Any:
    from PIL import Image

    from easel.models.joyimage_text import dropped_tokens

    pipe.set_progress_bar_config(disable=True)
    pipe.vae_image_processor.get_default_height_width = lambda image, h=None, w=None: (SIZE, SIZE)
    drop = dropped_tokens(pipe.tokenizer)
    pipe.prompt_template_encode_start_idx = {"image": drop, "multiple_images": drop}
    noise = torch.randn(
        (1, 16, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(42)
    )
    with torch.no_grad():
        out = pipe(
            image=Image.open(picture).convert("RGB"),
            prompt=PROMPT,
            num_inference_steps=steps,
            guidance_scale=1.0,
            latents=noise[:, None, :, None],
            output_type="np",
        ).images
    return as_tensor(out)


def test_joyimage_split_files_equal_joyimage_edit_pipeline(
    joyimage_models: Any, run_joyimage: Any, picture: Path
) -> None:
    ours = image_of(run_joyimage(workflow(picture), ["dec"]))
    theirs = reference(joyimage_models.pipe, picture)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_int8_files_are_refused_naming_file_and_tensor(
    joyimage_models: Any, run_joyimage: Any, picture: Path
) -> None:
    """Integer weights without ComfyUI's `.comfy_quant` marker (no format to read them by) are
    refused by both loaders, naming the file and a quantised tensor (ComfyUI's marked int8
    files are dequantised: tests/models/test_quantized_files.py)."""
    from safetensors.torch import load_file, save_file

    models = joyimage_models.root / "models"
    written = []
    for kind, name in (("transformer", "unet"), ("text_encoder", "clip")):
        state = load_file(str(models / joyimage_family.FILES[kind]))
        key = next(k for k in state if k.endswith(".weight") and state[k].dim() == 2)
        state[key] = state[key].to(torch.int8)
        path = models / joyimage_family.FILES[kind].replace(".safetensors", "_int8.safetensors")
        save_file(state, str(path))
        written.append((name, path, key))
    nodes = workflow(picture)
    for name, path, _ in written:
        nodes[name]["inputs"]["name"] = path.name
    result = run_joyimage(nodes, ["unet", "clip"])
    for _, path, _ in written:
        path.unlink()
    assert result.status != "succeeded"
    message = str(result.failures)
    for _, path, key in written:
        assert path.name in message and key in message and "int8" in message


@pytest.mark.slow
def test_without_an_image_equals_the_pipeline_text_to_image(
    joyimage_models: Any, run_joyimage: Any, picture: Path
) -> None:
    """No reference image: the text template alone (JoyImageEditPipeline's text-to-image)."""
    nodes = workflow(picture)
    del nodes["pos"]["inputs"]["image0"], nodes["img"]
    ours = image_of(run_joyimage(nodes, ["dec"]))
    pipe = joyimage_models.pipe
    pipe.set_progress_bar_config(disable=True)
    pipe.vae_image_processor.get_default_height_width = lambda image, h=None, w=None: (SIZE, SIZE)
    from easel.models.joyimage_text import dropped_tokens

    drop = dropped_tokens(pipe.tokenizer)
    pipe.prompt_template_encode_start_idx = {"image": drop, "multiple_images": drop}
    noise = torch.randn(
        (1, 16, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(42)
    )
    with torch.no_grad():
        out = pipe(
            prompt=PROMPT,
            num_inference_steps=3,
            guidance_scale=1.0,
            latents=noise[:, None, :, None],
            output_type="np",
        ).images
    theirs = as_tensor(out)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
