"""ComfyUI's own Capybara v0.1 text-to-image template (`Image_capybara_v0_1_text_to_image` of
the `comfyui-workflow-templates-json` corpus: a subgraph of UNETLoader, DualCLIPLoader type
hunyuan_video_15, VAELoader, ModelSamplingSD3, CLIPTextEncode x2, EmptyHunyuanVideo15Latent,
CFGGuider, KSamplerSelect euler, BasicScheduler simple, RandomNoise, SamplerCustomAdvanced,
VAEDecode) runs end to end on the tiny HunyuanVideo 1.5 models, saved under the file names the
template loads, and gives HunyuanVideo15Pipeline's image for the template's negative prompt,
seed, cfg and shift (the pipeline's own sigmas are ComfyUI's "simple" ones). Size, steps and the
positive prompt are made small. The edit template (slow run) likewise equals
HunyuanVideo15ImageToVideoPipeline."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_hunyuan15_parity import PROMPT, TOLERANCE, fit
from tests.families.workflows import as_tensor, only, run_for_image, stage_template_files, template
from tests.fixtures import hunyuan15_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

hunyuan15_models = hunyuan15_family.hunyuan15_models
WIDTH, HEIGHT = 48, 64
STEPS = 2
TEMPLATE_FILES = {
    "diffusion_models/capybara_v0.1.safetensors": hunyuan15_family.FILES["transformer"],
    "text_encoders/qwen_2.5_vl_7b.safetensors": hunyuan15_family.FILES["qwen"],
    "text_encoders/byt5_small_glyphxl_fp16.safetensors": hunyuan15_family.FILES["byt5"],
    "vae/hunyuanvideo15_vae_fp16.safetensors": hunyuan15_family.FILES["vae"],
}


def test_capybara_text_to_image_template_equals_hunyuan_video15_pipeline(
    hunyuan15_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler

    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    roots = stage_template_files(
        hunyuan15_models.root, TEMPLATE_FILES, tmp_path / "root", monkeypatch
    )
    workflow = to_easel(template("Image_capybara_v0_1_text_to_image"))
    nodes = workflow["nodes"]
    latent = only(nodes, "EmptyHunyuanVideo15Latent")
    set_input(workflow, f"{latent}.width", WIDTH)
    set_input(workflow, f"{latent}.height", HEIGHT)
    set_input(workflow, f"{only(nodes, 'BasicScheduler')}.steps", STEPS)
    guider = nodes[only(nodes, "CFGGuider")]["inputs"]
    # the tiny byte-level tokenizer makes the template's long prompt hundreds of tokens: a
    # short one instead, quoting a word for byT5
    set_input(workflow, f"{guider['positive'][0]}.text", PROMPT)
    ours = run_for_image(workflow, roots, tmp_path / "out")

    prompt = {side: nodes[guider[side][0]]["inputs"]["text"] for side in ("positive", "negative")}
    cfg = float(guider["cfg"])
    shift = float(nodes[only(nodes, "ModelSamplingSD3")]["inputs"]["shift"])
    seed = int(nodes[only(nodes, "RandomNoise")]["inputs"]["noise_seed"])
    assert cfg > 1 and nodes[only(nodes, "KSamplerSelect")]["inputs"]["sampler_name"] == "euler"
    assert nodes[only(nodes, "BasicScheduler")]["inputs"]["scheduler"] == "simple"
    pipe = hunyuan15_models.pipe
    original = pipe.scheduler, pipe.guider
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        original[0].config, shift=shift, use_dynamic_shifting=False
    )
    pipe.guider = ClassifierFreeGuidance(guidance_scale=cfg)
    fit(pipe, prompt["positive"], prompt["negative"])
    noise = torch.randn(
        (1, 32, HEIGHT // 16, WIDTH // 16), generator=torch.Generator("cpu").manual_seed(seed)
    )
    try:
        with torch.no_grad():
            out = pipe(
                prompt=prompt["positive"],
                negative_prompt=prompt["negative"],
                height=HEIGHT,
                width=WIDTH,
                num_frames=1,
                num_inference_steps=STEPS,
                latents=noise.unsqueeze(2),
                output_type="np",
            ).frames
    finally:
        pipe.scheduler, pipe.guider = original
    theirs = as_tensor(out[:, 0])
    assert ours.shape == theirs.shape == (1, 3, HEIGHT, WIDTH)
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


EDIT_SIZE = 32  # the tiny SigLIP's image size: the picture is neither resized nor cropped


@pytest.mark.slow  # the CI budget: the text-to-image template runs in the default run
def test_capybara_image_edit_template_equals_hunyuan_video15_image_to_video_pipeline(
    hunyuan15_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Image_capybara_v0_1_image_edit` (LoadImage, ResizeImageMaskNode, CLIPVisionLoader
    sigclip_vision_patch14_384 + CLIPVisionEncode, GetImageSize, HunyuanVideo15ImageToVideo,
    then the text-to-image template's sampling) equals HunyuanVideo15ImageToVideoPipeline on
    the same picture: its latent and mask beside the latent made, its SigLIP tokens."""
    import numpy as np
    from diffusers import ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    files = {
        **TEMPLATE_FILES,
        "clip_vision/sigclip_vision_patch14_384.safetensors": hunyuan15_family.FILES[
            "clip_vision"
        ],
    }
    roots = stage_template_files(hunyuan15_models.root, files, tmp_path / "root", monkeypatch)
    pixels = np.random.default_rng(3).integers(0, 256, (EDIT_SIZE, EDIT_SIZE, 3), dtype=np.uint8)
    picture = PILImage.fromarray(pixels, "RGB")
    picture.save(tmp_path / "input.png")
    workflow = to_easel(template("Image_capybara_v0_1_image_edit"))
    nodes = workflow["nodes"]
    resize = only(nodes, "ResizeImageMask")
    set_input(workflow, f"{resize}.width", EDIT_SIZE)
    set_input(workflow, f"{resize}.height", EDIT_SIZE)
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    set_input(workflow, f"{only(nodes, 'BasicScheduler')}.steps", STEPS)
    ours = run_for_image(workflow, roots, tmp_path / "out")

    i2v = nodes[only(nodes, "HunyuanVideo15ImageToVideo")]["inputs"]
    prompt = {side: nodes[i2v[side][0]]["inputs"]["text"] for side in ("positive", "negative")}
    cfg = float(nodes[only(nodes, "CFGGuider")]["inputs"]["cfg"])
    shift = float(nodes[only(nodes, "ModelSamplingSD3")]["inputs"]["shift"])
    seed = int(nodes[only(nodes, "RandomNoise")]["inputs"]["noise_seed"])
    pipe = hunyuan15_models.edit
    original = pipe.scheduler, pipe.guider
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        original[0].config, shift=shift, use_dynamic_shifting=False
    )
    pipe.guider = ClassifierFreeGuidance(guidance_scale=cfg)
    pipe.target_size = EDIT_SIZE  # its size bucket for the picture is the picture's size
    fit(pipe, prompt["positive"], prompt["negative"])
    side = EDIT_SIZE // 16
    noise = torch.randn((1, 32, side, side), generator=torch.Generator("cpu").manual_seed(seed))
    try:
        with torch.no_grad():
            out = pipe(
                image=picture,
                prompt=prompt["positive"],
                negative_prompt=prompt["negative"],
                num_frames=1,
                num_inference_steps=STEPS,
                latents=noise.unsqueeze(2),
                output_type="np",
            ).frames
    finally:
        pipe.scheduler, pipe.guider = original
    theirs = as_tensor(out[:, 0])
    assert ours.shape == theirs.shape == (1, 3, EDIT_SIZE, EDIT_SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
