"""LongCat-Image-Edit through ComfyUI's edit nodes: TextEncodeQwenImageEdit with a LongCat CLIP
(type longcat_image) and a VAE encodes the prompt with the image (seen by Qwen2.5-VL's vision
tower at half size) and makes the image's latent the reference; KSampler then gives diffusers'
LongCatImageEditPipeline image (CPU fp32, tiny random weights, max abs pixel diff 1e-3). The
pipeline's fixed 1024x1024 working area is made 64x64 on both sides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_longcat_parity import TOLERANCE
from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import longcat_family

longcat_models = longcat_family.longcat_models
longcat_manager = longcat_family.longcat_manager
run_longcat = longcat_family.run_longcat
PROMPT = 'make the sky purple and write "HI"'


@pytest.fixture
def small_area(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.pipelines.longcat_image import pipeline_longcat_image_edit

    from easel.nodes import qwen_image

    monkeypatch.setattr(qwen_image, "EDIT_AREA", SIZE * SIZE)
    monkeypatch.setattr(
        pipeline_longcat_image_edit, "calculate_dimensions", lambda area, ratio: (SIZE, SIZE)
    )


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    from PIL import Image

    generator = torch.Generator().manual_seed(11)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8).numpy()
    path = tmp_path / "input.png"
    Image.fromarray(pixels, "RGB").save(path)
    return path


def edit_pipe(models: Any) -> Any:
    from diffusers import LongCatImageEditPipeline

    pipe = models.pipe
    edit = LongCatImageEditPipeline(
        scheduler=longcat_family.scheduler(),
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        text_processor=pipe.text_processor,
        transformer=pipe.transformer,
    )
    edit.set_progress_bar_config(disable=True)
    return edit


def workflow(picture: Path, *, cfg: float) -> dict[str, Any]:
    def encoder(text: str) -> dict[str, Any]:
        return {
            "type": "TextEncodeQwenImageEdit",
            "inputs": {
                "clip": ["clip", "clip"],
                "prompt": text,
                "vae": ["vae", "vae"],
                "image": ["img", "image"],
            },
        }

    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "longcat_image.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen_2.5_vl_7b.safetensors", "type": "longcat_image"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "ae.safetensors"}},
        "img": {"type": "LoadImage", "inputs": {"image": str(picture)}},
        "pos": encoder(PROMPT),
        "neg": encoder(""),
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": 2,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }


@pytest.mark.parametrize("cfg", [1.0, 4.5])
def test_edit_nodes_equal_longcat_image_edit_pipeline(
    longcat_models: Any, run_longcat: Any, small_area: None, picture: Path, cfg: float
) -> None:
    from PIL import Image

    ours = image_of(run_longcat(workflow(picture, cfg=cfg), ["dec"]))
    with torch.no_grad():
        out = edit_pipe(longcat_models)(
            image=Image.open(picture).convert("RGB"),
            prompt=PROMPT,
            negative_prompt="",
            num_inference_steps=2,
            guidance_scale=cfg,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type="np",
        ).images
    theirs = as_tensor(out)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_the_image_reaches_the_prompt_encoding(longcat_models: Any, longcat_manager: Any) -> None:
    """The encoding with an image is the pipeline's: the image's tokens, then the 512."""
    from PIL import Image

    from easel.models import longcat_text
    from easel.models.family_files import load_clip
    from easel.models.qwen_text import to_pil

    path = longcat_models.root / "models" / longcat_family.FILES["text_encoder"]
    clip = load_clip("longcat_image", "te", [path], longcat_manager)
    generator = torch.Generator().manual_seed(5)
    pixels = (torch.rand(1, 3, 64, 96, generator=generator) * 255).round() / 255
    ours = longcat_text.encode_edit(clip, PROMPT, pixels)["embeds"]
    (pil,) = to_pil(pixels)
    half = pil.resize((48, 32), Image.Resampling.LANCZOS)
    with torch.no_grad():
        theirs = edit_pipe(longcat_models)._encode_prompt([PROMPT], half)
    assert ours.shape == theirs.shape and ours.shape[1] > 512
    assert torch.allclose(ours, theirs, atol=1e-5)
