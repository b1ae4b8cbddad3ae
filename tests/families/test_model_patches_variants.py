"""Slow variants of tests/families/test_model_patches.py: the Z-Image Fun ControlNet through
Easel's own nodes (not a template) equals ZImageControlNetPipeline; the Qwen DiffSynth
template's image changes with the ControlNet's strength; the inpainting variant's mask
channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_model_patches import (
    PROMPT,
    STRENGTH,
    TOLERANCE,
    control_picture,
    needs_templates,
    run,
    run_qwen_template,
    zimage_workflow,
)
from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import model_patch_files
from tests.fixtures.model_patch_files import executor_for

pytestmark = pytest.mark.slow
patch_files = model_patch_files.patch_files


def test_zimage_fun_controlnet_equals_zimage_controlnet_pipeline(
    patch_files: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ModelPatchLoader + QwenImageDiffsynthControlnet on the Z-Image split files equal
    ZImageControlNetPipeline with the same ControlNet (cfg 1: the pipeline's guidance 0)."""
    from diffusers import ZImageControlNetPipeline

    picture = control_picture(tmp_path / "canny.png")
    executor = executor_for(patch_files.zimage_root, monkeypatch)
    ours = image_of(run(executor, zimage_workflow(tmp_path / "canny.png")))
    plain = image_of(run(executor, zimage_workflow(tmp_path / "canny.png", patch=False)))

    base = patch_files.zimage
    pipe = ZImageControlNetPipeline(
        **{k: getattr(base, k) for k in ("scheduler", "vae", "text_encoder", "tokenizer")},
        transformer=base.transformer,
        controlnet=patch_files.zimage_controlnet,
    )
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=PROMPT,
            control_image=picture,
            controlnet_conditioning_scale=STRENGTH,
            height=SIZE,
            width=SIZE,
            num_inference_steps=3,
            guidance_scale=0.0,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type="np",
        ).images
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (ours - plain).abs().max().item() > 10 * TOLERANCE  # the control is seen


@needs_templates
def test_qwen_diffsynth_template_image_follows_the_strength(
    patch_files: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, _, _ = run_qwen_template(patch_files, tmp_path / "a", monkeypatch)
    plain, _, _ = run_qwen_template(patch_files, tmp_path / "b", monkeypatch, strength=0.0)
    assert (ours - plain).abs().max().item() > 10 / 255


def test_inpaint_mask_channel_is_what_is_kept() -> None:
    """The inpainting variant's extra channel: 1 - the MASK at latent size (1 where the image
    is kept), all ones without a mask; its `img_in` takes 64 + 4 inputs."""
    from easel.models.qwen_blockwise_controlnet import config_of, mask_channels

    mask = torch.zeros(1, 16, 16)
    mask[:, :8] = 1.0  # paint the top half
    planes = mask_channels(mask, 1, 4, 4, 1)
    assert planes.shape == (1, 1, 4, 4)
    assert torch.equal(planes[0, 0, :2], torch.zeros(2, 4))
    assert torch.equal(planes[0, 0, 2:], torch.ones(2, 4))
    assert torch.equal(mask_channels(None, 2, 4, 4, 1), torch.ones(2, 1, 4, 4))
    state = {"img_in.weight": torch.zeros(8, 68), "controlnet_blocks.2.y_rms.weight": None}
    config = config_of(state)
    assert (config.num_layers, config.in_dim, config.dim, config.mask_channels) == (3, 68, 8, 1)


def test_zimage_fun_controlnet_version_2_layout_equals_the_pipeline(
    patch_files: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version-2 layout (refiner blocks with projections, 33 control channels: zero past the
    control latent's 16, as the pipeline pads them), its config read off the file."""
    from diffusers import ZImageControlNetModel, ZImageControlNetPipeline
    from safetensors.torch import save_file

    transformer = patch_files.zimage.transformer
    torch.manual_seed(9)
    controlnet = ZImageControlNetModel(
        control_layers_places=[0, 1],
        control_refiner_layers_places=[0, 1],
        control_in_dim=33,
        add_control_noise_refiner="control_noise_refiner",
        dim=int(transformer.config.dim),
        n_refiner_layers=2,
        n_heads=int(transformer.config.n_heads),
        n_kv_heads=int(transformer.config.n_kv_heads),
    )
    model_patch_files._randomise(controlnet)
    controlnet.eval()
    name = "Z-Image-Turbo-Fun-Controlnet-Union-2.0.safetensors"
    patches = patch_files.zimage_root / "models" / "model_patches"
    save_file({k: v.contiguous() for k, v in controlnet.state_dict().items()}, str(patches / name))
    picture = control_picture(tmp_path / "canny.png")
    nodes = zimage_workflow(tmp_path / "canny.png")
    nodes["patch"]["inputs"]["name"] = name
    ours = image_of(run(executor_for(patch_files.zimage_root, monkeypatch), nodes))
    base = patch_files.zimage
    pipe = ZImageControlNetPipeline(
        **{k: getattr(base, k) for k in ("scheduler", "vae", "text_encoder", "tokenizer")},
        transformer=base.transformer,
        controlnet=controlnet,
    )
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=PROMPT,
            control_image=picture,
            controlnet_conditioning_scale=STRENGTH,
            height=SIZE,
            width=SIZE,
            num_inference_steps=3,
            guidance_scale=0.0,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type="np",
        ).images
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE
