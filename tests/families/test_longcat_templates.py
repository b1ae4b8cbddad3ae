"""ComfyUI's own LongCat-Image template (`image_longcat_text_to_image` of the
`comfyui-workflow-templates-json` corpus, in the dev extra: a subgraph of UNETLoader, CLIPLoader
type longcat_image, VAELoader, FluxGuidance on both prompts, CFGNorm, KSampler at cfg 4) runs end
to end on the tiny LongCat-Image models, saved under the file names the template loads, and
gives the image `reference` computes on LongCatImagePipeline's components. Size and steps are
made small."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_longcat_parity import TOLERANCE
from tests.families.workflows import only, run_for_image, stage_template_files, template
from tests.fixtures import longcat_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

longcat_models = longcat_family.longcat_models
SIZE = 64
STEPS = 2
# the file names ComfyUI's LongCat-Image template loads
TEMPLATE_FILES = {
    "diffusion_models/longcat_image_bf16.safetensors": longcat_family.FILES["transformer"],
    "text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors": longcat_family.FILES["text_encoder"],
    "vae/ae.safetensors": longcat_family.FILES["vae"],
}


def reference(pipe: Any, positive: str, negative: str, *, seed: int, cfg: float) -> Any:
    """What ComfyUI's template computes, on diffusers' components: LongCatImagePipeline's
    prompt encoding and schedule (its sigmas, shifted for the image's size), Euler, ComfyUI's
    CFG and CFGNorm (strength 1: the guided denoised estimate scaled, per latent pixel, to at
    most the conditional one's norm over channels), decoded as the pipeline decodes.
    FluxGuidance's value has no input in this model."""
    import numpy as np
    from diffusers.pipelines.longcat_image.pipeline_longcat_image import calculate_shift

    from easel.models.flux_denoiser import pack, unpack

    scheduler = pipe.scheduler
    with torch.no_grad():
        pos, pos_ids = pipe.encode_prompt(prompt=positive)
        neg, neg_ids = pipe.encode_prompt(prompt=negative)
        latents, image_ids = pipe.prepare_latents(
            1, 16, SIZE, SIZE, torch.float32, "cpu", torch.Generator("cpu").manual_seed(seed)
        )
        config = scheduler.config
        mu = calculate_shift(
            latents.shape[1],
            config.base_image_seq_len,
            config.max_image_seq_len,
            config.base_shift,
            config.max_shift,
        )
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / STEPS, STEPS), mu=mu)
        side = SIZE // 8
        for t in scheduler.timesteps:

            def velocity(embeds: Any, ids: Any, latents: Any = latents, t: Any = t) -> Any:
                out = pipe.transformer(
                    hidden_states=latents,
                    timestep=t.expand(1) / 1000,
                    encoder_hidden_states=embeds,
                    txt_ids=ids,
                    img_ids=image_ids,
                    return_dict=False,
                )[0]
                return unpack(out, side, side)

            x = unpack(latents, side, side)
            cond, uncond = velocity(pos, pos_ids), velocity(neg, neg_ids)
            guided = uncond + cfg * (cond - uncond)
            sigma = float(t) / 1000
            denoised, cond_x0 = x - sigma * guided, x - sigma * cond
            scale = cond_x0.norm(dim=1, keepdim=True) / (denoised.norm(dim=1, keepdim=True) + 1e-8)
            denoised = denoised * scale.clamp(0.0, 1.0)
            latents = scheduler.step(pack((x - denoised) / sigma), t, latents, return_dict=False)[0]
        raw = pipe._unpack_latents(latents, SIZE, SIZE, pipe.vae_scale_factor)
        raw = raw / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        decoded = pipe.vae.decode(raw, return_dict=False)[0]
    return (decoded / 2 + 0.5).clamp(0, 1)


def test_longcat_template_runs_with_comfyui_cfg_and_cfg_norm(
    longcat_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    roots = stage_template_files(
        longcat_models.root, TEMPLATE_FILES, tmp_path / "root", monkeypatch
    )

    workflow = to_easel(template("image_longcat_text_to_image"))
    nodes = workflow["nodes"]
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", STEPS)
    ours = run_for_image(workflow, roots, tmp_path / "out")

    inputs = nodes[sampler]["inputs"]
    prompt_of = {
        side: nodes[nodes[inputs[side][0]]["inputs"]["conditioning"][0]]["inputs"]["text"]
        for side in ("positive", "negative")
    }
    cfg = float(inputs["cfg"])
    assert cfg > 1 and float(nodes[only(nodes, "CFGNorm")]["inputs"]["strength"]) == 1.0
    theirs = reference(
        longcat_models.pipe,
        prompt_of["positive"],
        prompt_of["negative"],
        seed=int(inputs["seed"]),
        cfg=cfg,
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


EDIT_SIZE = 96  # ScaleToTotalPixels' least 0.01 megapixels, in steps of 16, leave 96x96 as is


def test_longcat_edit_template_equals_longcat_image_edit_pipeline(
    longcat_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's `image_longcat_image_edit` template (ScaleToTotalPixels, TextEncodeQwenImageEdit
    with the LongCat CLIP and the VAE on both sides, VAEEncode for the latent,
    FluxKontextMultiReferenceLatentMethod "index", FluxGuidance, KSampler at cfg 4.5) runs end
    to end and gives LongCatImageEditPipeline's image for its prompt, seed and cfg. The
    pipeline's fixed 1024x1024 working area and the encoder's are made 96x96."""
    import os

    import numpy as np
    from diffusers import LongCatImageEditPipeline
    from diffusers.pipelines.longcat_image import pipeline_longcat_image_edit
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.nodes import qwen_image
    from easel.workflow_edit import set_input

    monkeypatch.setattr(qwen_image, "EDIT_AREA", EDIT_SIZE * EDIT_SIZE)
    monkeypatch.setattr(
        pipeline_longcat_image_edit,
        "calculate_dimensions",
        lambda area, ratio: (EDIT_SIZE, EDIT_SIZE),
    )
    root = tmp_path / "root"
    files = {**TEMPLATE_FILES}
    files["diffusion_models/longcat_image_edit_bf16.safetensors"] = files.pop(
        "diffusion_models/longcat_image_bf16.safetensors"
    )
    for name, source in files.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(longcat_models.root / "models" / source, root / "models" / name)
    shutil.copytree(longcat_models.root / "ComfyUI", root / "ComfyUI")
    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    generator = torch.Generator().manual_seed(7)
    pixels = (torch.rand(EDIT_SIZE, EDIT_SIZE, 3, generator=generator) * 255).to(torch.uint8)
    picture = PILImage.fromarray(pixels.numpy(), "RGB")
    picture.save(tmp_path / "input.png")

    workflow = to_easel(template("image_longcat_image_edit"))
    nodes = workflow["nodes"]
    sampler = only(nodes, "KSampler")
    set_input(workflow, f"{sampler}.steps", STEPS)
    set_input(workflow, f"{only(nodes, 'ScaleToTotalPixels')}.megapixels", 0.01)
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out")
    assert result.ok, result.failures
    saved = [f for entry in result.ui.values() for f in entry.get("files", [])]
    [ours_file] = [f for f in saved if "LongCat-Image-Edit" in f]
    pixels_out = np.asarray(PILImage.open(tmp_path / "out" / ours_file).convert("RGB"))
    ours = torch.from_numpy(pixels_out.copy()).permute(2, 0, 1)[None].float() / 255

    inputs = nodes[sampler]["inputs"]
    prompt_of = {
        side: nodes[
            nodes[nodes[inputs[side][0]]["inputs"]["conditioning"][0]]["inputs"]["conditioning"][0]
        ]["inputs"]["prompt"]
        for side in ("positive", "negative")
    }
    cfg = float(inputs["cfg"])
    assert cfg > 1
    pipe = longcat_models.pipe
    edit = LongCatImageEditPipeline(
        scheduler=longcat_family.scheduler(),
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        text_processor=pipe.text_processor,
        transformer=pipe.transformer,
    )
    edit.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = edit(
            image=picture,
            prompt=prompt_of["positive"],
            negative_prompt=prompt_of["negative"],
            num_inference_steps=STEPS,
            guidance_scale=cfg,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
        ).images
    from tests.families.workflows import as_tensor

    theirs = as_tensor(out)
    assert ours.shape == theirs.shape == (1, 3, EDIT_SIZE, EDIT_SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
