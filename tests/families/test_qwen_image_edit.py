"""Qwen-Image-Edit through Easel's TextEncodeQwenImageEditPlus (the prompt with its images seen
by Qwen2.5-VL's vision tower, the images' latents as reference latents) gives diffusers'
QwenImageEditPlusPipeline image (CPU fp32, tiny random weights, max abs pixel diff 1e-3).

Both resize the images first (ComfyUI's node to about 384x384 for the vision tower and
1024x1024 for the VAE, "area" interpolation; the pipeline to the same areas with Pillow's
Lanczos): the test sets both areas to the input image's own 64x64, so that no resize happens
on either side and what is compared is the encoding and the sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_qwen_image_parity import reference, split_workflow
from tests.families.workflows import SIZE, image_of
from tests.fixtures import qwen_image_family

qwen_models = qwen_image_family.qwen_models
qwen_manager = qwen_image_family.qwen_manager
run_qwen = qwen_image_family.run_qwen

TOLERANCE = 1e-3
EDIT = "make the circle green"


def _image(path: Path, seed: int) -> Any:
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels, "RGB")
    image.save(path)
    return image


@pytest.fixture
def same_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both sides' resize targets at the test image's size (see the module docstring)."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus

    from easel.nodes import qwen_image

    for module, names in (
        (pipeline_qwenimage_edit_plus, ("CONDITION_IMAGE_SIZE", "VAE_IMAGE_SIZE")),
        (qwen_image, ("VISION_AREA", "REFERENCE_AREA", "EDIT_AREA")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, SIZE * SIZE)


def edit_workflow(images: list[Path], prompt: str = EDIT) -> dict[str, Any]:
    """ComfyUI's Qwen-Image-Edit-2509 template shape: the Plus encoder with the VAE and the
    images for the positive, KSampler at cfg 1."""
    nodes = split_workflow()
    inputs: dict[str, Any] = {"clip": ["clip", "clip"], "prompt": prompt, "vae": ["vae", "vae"]}
    for i, path in enumerate(images, start=1):
        nodes[f"img{i}"] = {"type": "LoadImage", "inputs": {"image": str(path)}}
        inputs[f"image{i}"] = [f"img{i}", "image"]
    nodes["pos"] = {"type": "TextEncodeQwenImageEditPlus", "inputs": inputs}
    return nodes


def test_edit_plus_equals_qwen_image_edit_plus_pipeline(
    qwen_models: Any, run_qwen: Any, tmp_path: Path, same_size: None
) -> None:
    image = _image(tmp_path / "in.png", 1)
    ours = image_of(run_qwen(edit_workflow([tmp_path / "in.png"]), ["dec"]))
    theirs = reference(
        qwen_models.edit, image=[image], prompt=EDIT, num_inference_steps=3, true_cfg_scale=1.0
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    plain = image_of(run_qwen(split_workflow(), ["dec"]))  # no image: another result
    assert (ours - plain).abs().max().item() > max(100 * error, 1e-4)


def test_edit_plus_with_two_images_equals_the_pipeline(
    qwen_models: Any, run_qwen: Any, tmp_path: Path, same_size: None
) -> None:
    images = [_image(tmp_path / "a.png", 2), _image(tmp_path / "b.png", 3)]
    ours = image_of(run_qwen(edit_workflow([tmp_path / "a.png", tmp_path / "b.png"]), ["dec"]))
    theirs = reference(
        qwen_models.edit, image=images, prompt=EDIT, num_inference_steps=3, true_cfg_scale=1.0
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_reference_latent_node_feeds_the_same_reference(
    run_qwen: Any, tmp_path: Path, same_size: None
) -> None:
    """VAEEncode -> ReferenceLatent after an encoder without a VAE gives the reference latent
    the Plus encoder makes with one."""
    _image(tmp_path / "in.png", 1)
    ours = image_of(run_qwen(edit_workflow([tmp_path / "in.png"]), ["dec"]))
    nodes = edit_workflow([tmp_path / "in.png"])
    del nodes["pos"]["inputs"]["vae"]
    nodes["enc"] = {
        "type": "VAEEncode",
        "inputs": {"vae": ["vae", "vae"], "image": ["img1", "image"]},
    }
    nodes["ref"] = {
        "type": "ReferenceLatent",
        "inputs": {"conditioning": ["pos", "conditioning"], "latent": ["enc", "latent"]},
    }
    nodes["k"]["inputs"]["positive"] = ["ref", "conditioning"]
    assert (image_of(run_qwen(nodes, ["dec"])) - ours).abs().max().item() <= 1e-5


@pytest.fixture(scope="module")
def edit_2511(qwen_models: Any) -> Any:
    """QwenImageEditPlusPipeline with Edit-2511's transformer config (`zero_cond_t`: reference
    tokens modulated with the timestep 0), the same weights."""
    from diffusers import QwenImageEditPlusPipeline, QwenImageTransformer2DModel

    edit = qwen_models.edit
    transformer = QwenImageTransformer2DModel.from_config(
        edit.transformer.config, zero_cond_t=True
    ).eval()
    transformer.load_state_dict(edit.transformer.state_dict())
    parts = ("scheduler", "vae", "text_encoder", "tokenizer", "processor")
    pipe = QwenImageEditPlusPipeline(
        transformer=transformer, **{k: getattr(edit, k) for k in parts}
    )
    pipe.prompt_template_encode_start_idx = edit.prompt_template_encode_start_idx
    return pipe


def test_index_timestep_zero_equals_edit_2511(
    qwen_models: Any, edit_2511: Any, run_qwen: Any, tmp_path: Path, same_size: None
) -> None:
    """FluxKontextMultiReferenceLatentMethod "index_timestep_zero" (ComfyUI's Edit-2511
    templates) gives the pipeline's image with Edit-2511's zero_cond_t; plain "index" the
    Edit-2509 one."""
    image = _image(tmp_path / "in.png", 1)
    nodes = edit_workflow([tmp_path / "in.png"])
    nodes["method"] = {
        "type": "FluxKontextMultiReferenceLatentMethod",
        "inputs": {
            "conditioning": ["pos", "conditioning"],
            "reference_latents_method": "index_timestep_zero",
        },
    }
    nodes["k"]["inputs"]["positive"] = ["method", "conditioning"]
    ours = image_of(run_qwen(nodes, ["dec"]))
    kwargs = {"image": [image], "prompt": EDIT, "num_inference_steps": 3, "true_cfg_scale": 1.0}
    theirs = reference(edit_2511, **kwargs)
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    plain = reference(qwen_models.edit, **kwargs)
    assert (ours - plain).abs().max().item() > max(100 * error, 1e-4)
    nodes["method"]["inputs"]["reference_latents_method"] = "index"
    assert (image_of(run_qwen(nodes, ["dec"])) - plain).abs().max().item() <= TOLERANCE


def test_edit_2511_file_marker_sets_zero_cond_t(
    qwen_models: Any, edit_2511: Any, run_qwen: Any, tmp_path: Path, same_size: None
) -> None:
    """A diffusion model file with ComfyUI's `__index_timestep_zero__` marker loads as
    Edit-2511 (zero_cond_t), without any method node."""
    from safetensors.torch import load_file, save_file

    models = qwen_models.root / "models" / "diffusion_models"
    state = load_file(str(models / "qwen_image.safetensors"))
    state["__index_timestep_zero__"] = torch.tensor([])
    save_file(state, str(models / "qwen_image_edit_2511.safetensors"))
    image = _image(tmp_path / "in.png", 1)
    nodes = edit_workflow([tmp_path / "in.png"])
    nodes["unet"]["inputs"]["name"] = "qwen_image_edit_2511.safetensors"
    ours = image_of(run_qwen(nodes, ["dec"]))
    theirs = reference(
        edit_2511, image=[image], prompt=EDIT, num_inference_steps=3, true_cfg_scale=1.0
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_offset_reference_method_is_refused(run_qwen: Any, tmp_path: Path, same_size: None) -> None:
    _image(tmp_path / "in.png", 1)
    nodes = edit_workflow([tmp_path / "in.png"])
    nodes["method"] = {
        "type": "FluxKontextMultiReferenceLatentMethod",
        "inputs": {"conditioning": ["pos", "conditioning"], "reference_latents_method": "offset"},
    }
    nodes["k"]["inputs"]["positive"] = ["method", "conditioning"]
    result = run_qwen(nodes, ["dec"])
    assert result.status != "succeeded"
    assert "places reference latents by index" in str(result.failures)


def test_edit_equals_qwen_image_edit_pipeline(
    qwen_models: Any, run_qwen: Any, tmp_path: Path, same_size: None, monkeypatch: Any
) -> None:
    """TextEncodeQwenImageEdit (the first Edit model's encoder: one image, no "Picture 1:")
    gives QwenImageEditPipeline's image. That pipeline sizes the image to 1024 x 1024 by a
    function of its module, set here to the image's own size as the other resizes are."""
    from diffusers import QwenImageEditPipeline
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit

    monkeypatch.setattr(
        pipeline_qwenimage_edit, "calculate_dimensions", lambda area, ratio: (SIZE, SIZE, None)
    )
    edit = qwen_models.edit
    parts = ("scheduler", "vae", "text_encoder", "tokenizer", "processor", "transformer")
    pipe = QwenImageEditPipeline(**{k: getattr(edit, k) for k in parts})
    pipe.prompt_template_encode_start_idx = edit.prompt_template_encode_start_idx
    image = _image(tmp_path / "in.png", 4)
    nodes = edit_workflow([])
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(tmp_path / "in.png")}}
    nodes["pos"] = {
        "type": "TextEncodeQwenImageEdit",
        "inputs": {
            "clip": ["clip", "clip"],
            "prompt": EDIT,
            "vae": ["vae", "vae"],
            "image": ["img", "image"],
        },
    }
    ours = image_of(run_qwen(nodes, ["dec"]))
    theirs = reference(pipe, image=image, prompt=EDIT, num_inference_steps=3, true_cfg_scale=1.0)
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    plus = reference(edit, image=[image], prompt=EDIT, num_inference_steps=3, true_cfg_scale=1.0)
    assert (ours - plus).abs().max().item() > max(100 * error, 1e-4)  # its own template
