"""ComfyUI's own Qwen-Image template (`image_qwen_image` of the `comfyui-workflow-templates-json`
corpus, in the dev extra) runs end to end on the tiny Qwen-Image models, saved under the file
names the template loads, and gives QwenImagePipeline's image for the template's prompt, seed,
sampler and shift (ModelSamplingAuraFlow's fixed shift: the pipeline's scheduler configured
with it). Size and steps are made small, and cfg 1 (the template's 4 runs ComfyUI's plain CFG,
which QwenImagePipeline's true CFG with its norm rescale is not)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_qwen_image_parity import TOLERANCE
from tests.families.workflows import as_tensor, only, template
from tests.fixtures import qwen_image_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

qwen_models = qwen_image_family.qwen_models
SIZE = 64
STEPS = 2
# the file names ComfyUI's Qwen-Image templates load
TEMPLATE_FILES = {
    "diffusion_models/qwen_image_fp8_e4m3fn.safetensors": "diffusion_models/qwen_image.safetensors",
    "text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors": (
        "text_encoders/qwen_2.5_vl_7b.safetensors"
    ),
    "vae/qwen_image_vae.safetensors": "vae/qwen_image_vae.safetensors",
}


LIGHTNING = "Qwen-Image-Lightning-8steps-V1.0.safetensors"


@pytest.fixture(scope="module")
def template_root(qwen_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qwen-templates")
    for name, source in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(qwen_models.root / "models" / source, root / "models" / name)
    shutil.copytree(qwen_models.root / "ComfyUI", root / "ComfyUI")
    # the Lightning LoRA the template's switch leaves off: present, so the workflow validates,
    # never read (a Switch runs only the branch it picks)
    from safetensors.torch import save_file

    (root / "models" / "loras").mkdir(parents=True)
    save_file({"unused": torch.zeros(1)}, str(root / "models" / "loras" / LIGHTNING))
    return root


def test_qwen_image_template_runs_and_equals_qwen_image_pipeline(
    template_root: Path, qwen_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("image_qwen_image"))
    nodes = workflow["nodes"]
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    # steps and cfg come through Switches from the template's Int / Float (Lightning LoRA off)
    switch = nodes[only(nodes, "Boolean")]["inputs"]["value"]
    assert switch is False, "the template's default is the plain model (no Lightning LoRA)"
    steps_switch = nodes[sampler]["inputs"]["steps"][0]
    cfg_switch = nodes[sampler]["inputs"]["cfg"][0]
    set_input(workflow, f"{nodes[steps_switch]['inputs']['on_false'][0]}.value", STEPS)
    set_input(workflow, f"{nodes[cfg_switch]['inputs']['on_false'][0]}.value", 1.0)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    inputs = nodes[sampler]["inputs"]
    prompt = nodes[inputs["positive"][0]]["inputs"]["text"]
    shift = float(nodes[only(nodes, "ModelSamplingAuraFlow")]["inputs"]["shift"])
    pipe = qwen_models.pipe
    original = pipe.scheduler
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        original.config, shift=shift, use_dynamic_shifting=False, shift_terminal=None
    )
    try:
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            out = pipe(
                prompt=prompt,
                height=SIZE,
                width=SIZE,
                num_inference_steps=STEPS,
                true_cfg_scale=1.0,
                generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
                output_type="np",
            ).images
    finally:
        pipe.scheduler = original
    theirs = as_tensor(out)
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


EDIT_FILES = {
    "diffusion_models/qwen_image_edit_2509_fp8_e4m3fn.safetensors": (
        "diffusion_models/qwen_image.safetensors"
    ),
}
EDIT_LIGHTNING = "Qwen-Image-Edit-2509-Lightning-4steps-V1.0-bf16.safetensors"


def edit_reference(
    pipe: Any, image: Any, prompt: str, *, seed: int, steps: int, cfg: float, shift: float
) -> Any:
    """What ComfyUI's Qwen-Image-Edit-2509 template computes, on diffusers' components: the
    Plus encoder for both sides (the negative: the empty prompt with the image), the image's
    latent as reference, Euler on the fixed-shift sigmas, ComfyUI's CFG and CFGNorm (strength 1:
    the guided denoised estimate scaled, per latent pixel, to at most the conditional one's
    norm over channels), decoded as the pipeline decodes."""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    from easel.models.flux_denoiser import pack, unpack

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        pipe.scheduler.config, shift=shift, use_dynamic_shifting=False, shift_terminal=None
    )
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps))
    with torch.no_grad():
        positive, pos_mask = pipe.encode_prompt(image=[image], prompt=prompt)
        negative, neg_mask = pipe.encode_prompt(image=[image], prompt="")
        vae_image = pipe.image_processor.preprocess(image, SIZE, SIZE).unsqueeze(2)
        latents, reference = pipe.prepare_latents(
            [vae_image], 1, 16, SIZE, SIZE, torch.float32, "cpu",
            torch.Generator("cpu").manual_seed(seed),
        )  # fmt: skip
        side = SIZE // 16
        shapes = [[(1, side, side), (1, side, side)]]
        for t in scheduler.timesteps:

            def velocity(embeds: Any, mask: Any, latents: Any = latents, t: Any = t) -> Any:
                out = pipe.transformer(
                    hidden_states=torch.cat([latents, reference], dim=1),
                    timestep=t.expand(1) / 1000,
                    encoder_hidden_states=embeds,
                    encoder_hidden_states_mask=mask,
                    img_shapes=shapes,
                    return_dict=False,
                )[0]
                return unpack(out[:, : latents.shape[1]], SIZE // 8, SIZE // 8)

            x = unpack(latents, SIZE // 8, SIZE // 8)
            cond, uncond = velocity(positive, pos_mask), velocity(negative, neg_mask)
            guided = uncond + cfg * (cond - uncond)
            sigma = float(t) / 1000
            denoised, cond_x0 = x - sigma * guided, x - sigma * cond
            scale = cond_x0.norm(dim=1, keepdim=True) / (denoised.norm(dim=1, keepdim=True) + 1e-8)
            denoised = denoised * scale.clamp(0.0, 1.0)
            step = pack((x - denoised) / sigma)
            latents = scheduler.step(step, t, latents, return_dict=False)[0]
        raw = pipe._unpack_latents(latents, SIZE, SIZE, pipe.vae_scale_factor)
        mean = torch.tensor(pipe.vae.config.latents_mean).view(1, 16, 1, 1, 1)
        std = torch.tensor(pipe.vae.config.latents_std).view(1, 16, 1, 1, 1)
        decoded = pipe.vae.decode(raw * std + mean, return_dict=False)[0][:, :, 0]
    return (decoded / 2 + 0.5).clamp(0, 1)


def test_qwen_image_edit_template_runs_with_comfyui_cfg_and_cfg_norm(
    template_root: Path,
    qwen_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ComfyUI's `image_qwen_image_edit_2509` template (FluxKontextImageScale, the Plus encoder
    for both sides, VAEEncode for the latent, ModelSamplingAuraFlow, CFGNorm, KSampler at cfg 4)
    runs end to end and gives the image `edit_reference` computes. Sizes are made small: the
    Kontext resolutions and the Plus encoder's areas at the input's 64x64, 2 steps."""
    import os

    import numpy as np
    from PIL import Image as PILImage
    from safetensors.torch import save_file

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.nodes import image_utils, qwen_image
    from easel.workflow_edit import set_input

    monkeypatch.setattr(image_utils, "KONTEXT_RESOLUTIONS", [(SIZE, SIZE)])
    for name in ("VISION_AREA", "REFERENCE_AREA", "EDIT_AREA"):
        monkeypatch.setattr(qwen_image, name, SIZE * SIZE)
    models = template_root / "models"
    for name, source in EDIT_FILES.items():
        shutil.copyfile(qwen_models.root / "models" / source, models / name)
    save_file({"unused": torch.zeros(1)}, str(models / "loras" / EDIT_LIGHTNING))
    generator = torch.Generator().manual_seed(7)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8).numpy()
    image = PILImage.fromarray(pixels, "RGB")
    image.save(tmp_path / "input.png")

    roots = [models, template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("image_qwen_image_edit_2509"))
    nodes = workflow["nodes"]
    set_input(workflow, f"{only(nodes, 'Boolean')}.value", False)  # the plain model, no LoRA
    sampler = only(nodes, "KSampler")
    steps_switch = nodes[sampler]["inputs"]["steps"][0]
    set_input(workflow, f"{nodes[steps_switch]['inputs']['on_false'][0]}.value", STEPS)
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out")
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / "out" / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    cfg_switch = nodes[sampler]["inputs"]["cfg"][0]
    cfg = float(nodes[nodes[cfg_switch]["inputs"]["on_false"][0]]["inputs"]["value"])
    positive = nodes[nodes[sampler]["inputs"]["positive"][0]]["inputs"]["prompt"]
    shift = float(nodes[only(nodes, "ModelSamplingAuraFlow")]["inputs"]["shift"])
    assert cfg > 1 and float(nodes[only(nodes, "CFGNorm")]["inputs"]["strength"]) == 1.0
    theirs = edit_reference(
        qwen_models.edit,
        image,
        positive,
        seed=int(nodes[sampler]["inputs"]["seed"]),
        steps=STEPS,
        cfg=cfg,
        shift=shift,
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
