"""ComfyUI's own JoyImage Edit template (`image_joyai_image_edit` of the
`comfyui-workflow-templates-json` corpus: a subgraph of UNETLoader, CLIPLoader type joyimage,
VAELoader, CFGNorm, TextEncodeJoyImageEdit on both sides with the loaded image, KSampler euler /
normal at cfg 4; outside it LoadImage, ImageScaleToTotalPixels and GetImageSize for the latent's
size) runs end to end on the tiny JoyImage models, saved under the file names the template loads,
and gives what ComfyUI computes on diffusers' components: JoyImageEditPipeline's prompt and
image encodings and schedule, Euler, ComfyUI's CFG and CFGNorm. Made small: the image (96x96,
which ImageScaleToTotalPixels at its least 0.01 megapixels in steps of 16 leaves as it is), the
encoder's size buckets (`base` 96) and the steps."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_joyimage_parity import TOLERANCE
from tests.families.workflows import only, stage_template_files, template
from tests.fixtures import joyimage_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

joyimage_models = joyimage_family.joyimage_models
SIZE = 96
STEPS = 2
TEMPLATE_FILES = {
    "diffusion_models/joyai_image_edit_int8_convrot.safetensors": joyimage_family.FILES[
        "transformer"
    ],
    "text_encoders/qwen3vl_8b_joyimage_edit_int8_convrot.safetensors": joyimage_family.FILES[
        "text_encoder"
    ],
    "vae/wan_2.1_vae.safetensors": joyimage_family.FILES["vae"],
}


def _literal(nodes: dict[str, Any], value: Any) -> Any:
    """A literal input, or the value of the constant node it is linked to."""
    while isinstance(value, list):
        value = nodes[value[0]]["inputs"]["value"]
    return value


def reference(pipe: Any, picture: Any, prompts: dict[str, str], *, seed: int, cfg: float) -> Any:
    """ComfyUI's computation on diffusers' components: the pipeline's prompt encodings with the
    image and its image latent, its schedule (the scheduler's own sigmas: KSampler "normal"),
    Euler steps on the image's latent with the reference beside it, ComfyUI's CFG and CFGNorm
    (strength 1: the guided denoised estimate scaled, per latent pixel, to at most the
    conditional one's norm over channels), decoded as the pipeline decodes."""
    from easel.models.joyimage_text import dropped_tokens

    drop = dropped_tokens(pipe.tokenizer)
    pipe.prompt_template_encode_start_idx = {"image": drop, "multiple_images": drop}
    scheduler = pipe.scheduler
    with torch.no_grad():
        embeds = {
            side: pipe.encode_prompt_multiple_images(prompt=text, images=picture, device="cpu")[0]
            for side, text in prompts.items()
        }
        _, image_latents = pipe.prepare_latents(
            1, 16, SIZE, SIZE, 1, torch.float32, "cpu", None, latents=None, image=[picture]
        )
        x = torch.randn(
            (1, 16, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(seed)
        )
        scheduler.set_timesteps(STEPS)
        for i, t in enumerate(scheduler.timesteps):

            def velocity(side: str, x: Any = x, t: Any = t) -> Any:
                items = torch.cat([image_latents, x[:, None, :, None]], dim=1)
                out = pipe.transformer(
                    hidden_states=items,
                    timestep=t.expand(1),
                    encoder_hidden_states=embeds[side],
                    return_dict=False,
                )[0]
                return out[:, -1, :, 0]

            cond, uncond = velocity("positive"), velocity("negative")
            guided = uncond + cfg * (cond - uncond)
            sigma = float(scheduler.sigmas[i])
            denoised, cond_x0 = x - sigma * guided, x - sigma * cond
            scale = cond_x0.norm(dim=1, keepdim=True) / (denoised.norm(dim=1, keepdim=True) + 1e-8)
            denoised = denoised * scale.clamp(0.0, 1.0)
            x = scheduler.step((x - denoised) / sigma, t, x, return_dict=False)[0]
        raw = pipe.denormalize_latents(x[:, :, None])
        decoded = pipe.vae.decode(raw, return_dict=False)[0][:, :, 0]
    return (decoded / 2 + 0.5).clamp(0, 1)


def test_joyimage_template_runs_with_comfyui_cfg_and_cfg_norm(
    joyimage_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    import numpy as np
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    roots = stage_template_files(
        joyimage_models.root, TEMPLATE_FILES, tmp_path / "root", monkeypatch
    )
    generator = torch.Generator().manual_seed(7)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8)
    picture = PILImage.fromarray(pixels.numpy(), "RGB")
    picture.save(tmp_path / "input.png")

    workflow = to_easel(template("image_joyai_image_edit"))
    nodes = workflow["nodes"]
    sampler = only(nodes, "KSampler")
    set_input(workflow, f"{sampler}.steps", STEPS)
    set_input(workflow, f"{only(nodes, 'ScaleToTotalPixels')}.megapixels", 0.01)
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    for node_id, node in nodes.items():
        if node["type"] == "TextEncodeJoyImageEdit":
            set_input(workflow, f"{node_id}.base", SIZE)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out")
    assert result.ok, result.failures
    saved = [f for entry in result.ui.values() for f in entry.get("files", [])]
    [ours_file] = [f for f in saved if "Joy_Image_Edit" in f]
    pixels_out = np.asarray(PILImage.open(tmp_path / "out" / ours_file).convert("RGB"))
    ours = torch.from_numpy(pixels_out.copy()).permute(2, 0, 1)[None].float() / 255

    inputs = nodes[sampler]["inputs"]
    prompts = {
        side: _literal(nodes, nodes[inputs[side][0]]["inputs"]["prompt"])
        for side in ("positive", "negative")
    }
    cfg = float(_literal(nodes, inputs["cfg"]))
    assert cfg > 1 and inputs["scheduler"] == "normal"
    theirs = reference(
        joyimage_models.pipe, picture, prompts, seed=int(_literal(nodes, inputs["seed"])), cfg=cfg
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
