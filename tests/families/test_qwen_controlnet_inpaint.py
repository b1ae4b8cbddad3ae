"""InstantX's Qwen-Image inpainting ControlNet, loaded by ControlNetLoader from a file in its
own (diffusers') keys and applied by ControlNetInpaintingAliMamaApply to the tiny Qwen-Image
split files, gives diffusers' QwenImageControlNetInpaintPipeline image (CPU fp32, tiny random
weights, max abs pixel difference 1e-3).

Pinned on the pipeline's side: it encodes the masked control image with a sample of the VAE's
posterior (unseeded), ComfyUI and Easel with its mode, so the test makes the pipeline take the
mode; the mask's edges lie on the 8-pixel latent grid, where the pipeline's nearest and
ComfyUI's nearest-exact resize to the latent agree. cfg 1: the pipeline's true CFG rescales to
the conditional prediction's norm and runs the negative with the positive's ControlNet
residuals, which ComfyUI's CFG does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_qwen_image_parity import PROMPT, reference, split_workflow
from tests.families.workflows import SIZE, image_of
from tests.fixtures import qwen_image_family

qwen_models = qwen_image_family.qwen_models
qwen_manager = qwen_image_family.qwen_manager
run_qwen = qwen_image_family.run_qwen

TOLERANCE = 1e-3
CONTROLNET = "qwen_instantx_inpainting.safetensors"
HOLE = (slice(16, 40), slice(24, 48))  # rows, columns to repaint: on the 8-pixel grid


@pytest.fixture(scope="module")
def inpaint(qwen_models: Any) -> Any:
    """The pipeline around the tiny Qwen-Image models and a tiny inpainting ControlNet (its
    zero-initialised projections given random weights), saved in controlnet/."""
    from diffusers import QwenImageControlNetInpaintPipeline, QwenImageControlNetModel
    from safetensors.torch import save_file

    torch.manual_seed(11)
    controlnet = QwenImageControlNetModel(
        num_layers=1,
        attention_head_dim=qwen_image_family.HEAD,
        num_attention_heads=1,
        joint_attention_dim=qwen_image_family.TEXT_WIDTH,
        extra_condition_channels=4,
    ).eval()
    with torch.no_grad():
        for module in (*controlnet.controlnet_blocks, controlnet.controlnet_x_embedder):
            module.weight.normal_(0, 0.05)
    folder = qwen_models.root / "models" / "controlnet"
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in controlnet.state_dict().items()}
    save_file(state, str(folder / CONTROLNET))
    pipe = qwen_models.pipe
    parts = ("scheduler", "vae", "text_encoder", "tokenizer", "transformer")
    out = QwenImageControlNetInpaintPipeline(
        controlnet=controlnet, **{k: getattr(pipe, k) for k in parts}
    )
    out.prompt_template_encode_start_idx = pipe.prompt_template_encode_start_idx
    return out


def _images(folder: Path) -> tuple[Path, Any, Any]:
    """An RGBA file whose alpha is 0 in the hole (LoadImage's mask: 1 there), and the RGB
    image and the white-in-the-hole mask the pipeline takes."""
    from PIL import Image

    generator = torch.Generator().manual_seed(5)
    rgb = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8)
    alpha = torch.full((SIZE, SIZE, 1), 255, dtype=torch.uint8)
    alpha[HOLE] = 0
    path = folder / "inpaint.png"
    Image.fromarray(torch.cat([rgb, alpha], dim=-1).numpy(), "RGBA").save(path)
    mask = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
    mask[HOLE] = 255
    return path, Image.fromarray(rgb.numpy(), "RGB"), Image.fromarray(mask.numpy(), "L")


def inpaint_workflow(image: Path, strength: float = 1.0) -> dict[str, Any]:
    """The image_qwen_image_instantx_inpainting_controlnet template's shape: LoadImage's image
    and mask into ControlNetInpaintingAliMamaApply with the VAE, KSampler at cfg 1."""
    nodes = split_workflow()
    nodes["neg"] = {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": ""}}
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(image)}}
    nodes["cn"] = {"type": "ControlNetLoader", "inputs": {"name": CONTROLNET}}
    nodes["apply"] = {
        "type": "ControlNetInpaintingAliMamaApply",
        "inputs": {
            "positive": ["pos", "conditioning"],
            "negative": ["neg", "conditioning"],
            "control_net": ["cn", "control_net"],
            "vae": ["vae", "vae"],
            "image": ["img", "image"],
            "mask": ["img", "mask"],
            "strength": strength,
            "start_percent": 0.0,
            "end_percent": 1.0,
        },
    }
    nodes["k"]["inputs"]["positive"] = ["apply", "positive"]
    nodes["k"]["inputs"]["negative"] = ["apply", "negative"]
    return nodes


def test_inpainting_controlnet_equals_qwen_image_controlnet_inpaint_pipeline(
    inpaint: Any, run_qwen: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    path, image, mask = _images(tmp_path)
    ours = image_of(run_qwen(inpaint_workflow(path, strength=0.8), ["dec"]))
    monkeypatch.setattr(
        DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode()
    )
    theirs = reference(
        inpaint,
        prompt=PROMPT,
        control_image=image,
        control_mask=mask,
        controlnet_conditioning_scale=0.8,
        num_inference_steps=3,
        true_cfg_scale=1.0,
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    error = (ours - theirs).abs().max().item()
    print(f"Qwen-Image InstantX inpainting ControlNet parity: max abs difference {error:.2e}")
    assert error <= TOLERANCE
    plain = image_of(run_qwen(split_workflow(), ["dec"]))  # no ControlNet: another image
    assert (ours - plain).abs().max().item() > max(100 * error, 1e-4)


TEMPLATE = "image_qwen_image_instantx_inpainting_controlnet"
TEMPLATE_FILES = {  # the template's file names -> the tiny models'
    "diffusion_models/qwen_image_fp8_e4m3fn.safetensors": "diffusion_models/qwen_image.safetensors",
    "text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors": (
        "text_encoders/qwen_2.5_vl_7b.safetensors"
    ),
    "vae/qwen_image_vae.safetensors": "vae/qwen_image_vae.safetensors",
    "controlnet/Qwen-Image-InstantX-ControlNet-Inpainting.safetensors": f"controlnet/{CONTROLNET}",
}


def test_inpainting_template_runs_end_to_end(
    inpaint: Any, qwen_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's image_qwen_image_instantx_inpainting_controlnet template (LoadImage's painted
    mask grown and blurred in a subgraph, ControlNetInpaintingAliMamaApply, SetLatentNoiseMask,
    KSampler at cfg 2.5, ImageCompositeMasked) runs end to end on the tiny models saved under
    its file names, at 64x64 and 2 steps. No pipeline does the template's noise-mask blending
    and soft mask, so what is checked is the composite: the input where the blurred mask is 0,
    repainted in the hole."""
    import importlib.util
    import json
    import os
    import shutil

    import numpy as np
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    spec = importlib.util.find_spec("comfyui_workflow_templates_json")
    assert spec is not None and spec.origin is not None, "the templates corpus (dev extra)"
    text = (Path(spec.origin).parent / "templates" / f"{TEMPLATE}.json").read_text("utf-8")
    models = tmp_path / "models"
    for name, source in TEMPLATE_FILES.items():
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(qwen_models.root / "models" / source, models / name)
    path, _, _ = _images(tmp_path)
    roots = [models, qwen_models.root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(json.loads(text))
    nodes = workflow["nodes"]
    only = {n["type"]: i for i, n in nodes.items()}
    assert only["ControlNetInpaintingAliMamaApply"] and only["SetLatentNoiseMask"]
    set_input(workflow, f"{only['LoadImage']}.image", str(path))
    set_input(workflow, f"{only['ResizeImageMask']}.longer_size", SIZE)
    set_input(workflow, f"{only['KSampler']}.steps", 2)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out", keep_values=True)
    assert result.ok, result.failures
    composite = only["ImageCompositeMasked"]
    [saver] = [i for i, n in nodes.items() if n["inputs"].get("image") == [composite, "image"]]
    [saved] = result.ui[saver]["files"]
    out = torch.from_numpy(np.asarray(PILImage.open(tmp_path / "out" / saved)).copy())
    out = out.permute(2, 0, 1)[None].float() / 255
    inputs = nodes[composite]["inputs"]
    source = result.values[inputs["source"][0]]["image"]  # the decoded sample
    destination = result.values[inputs["destination"][0]][inputs["destination"][1]]
    mask = result.values[inputs["mask"][0]]["mask"][:, None]
    assert out.shape == source.shape == destination.shape == (1, 3, SIZE, SIZE)
    # ImageCompositeMasked: the sample where the (grown, blurred) mask is, the input elsewhere
    expected = source * mask + destination * (1 - mask)
    assert (out - expected).abs().max().item() <= 0.5 / 255 + 1e-4
    hole = (slice(None), slice(None), *HOLE)
    assert (out[hole] - destination[hole]).abs().mean().item() > 0.02  # repainted


def test_a_stable_diffusion_controlnet_is_refused_naming_the_input() -> None:
    from types import SimpleNamespace

    from easel.core.node import NodeError
    from easel.nodes.controlnet_inpaint import ControlNetInpaintingAliMamaApply as node_type

    inputs = {
        **node_type.value_defaults,
        "positive": {},
        "negative": {},
        "control_net": SimpleNamespace(name="sd15_inpaint", model=object()),
        "vae": None,
        "image": torch.zeros(1, 3, 8, 8),
        "mask": torch.zeros(1, 8, 8),
    }
    with pytest.raises(NodeError) as info:
        node_type.call(None, inputs)
    assert info.value.input == "control_net" and "Qwen-Image" in info.value.message


def test_a_partial_percent_range_is_refused(inpaint: Any, run_qwen: Any, tmp_path: Path) -> None:
    path, _, _ = _images(tmp_path)
    nodes = inpaint_workflow(path)
    nodes["apply"]["inputs"]["start_percent"] = 0.2
    result = run_qwen(nodes, ["dec"])
    assert result.status != "succeeded"
    assert "start_percent 0 and end_percent 1" in str(result.failures)


@pytest.mark.slow
def test_controlnet_apply_advanced_equals_qwen_image_controlnet_pipeline(
    qwen_models: Any, run_qwen: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-inpainting InstantX ControlNet (no mask channel) through ControlNetApplyAdvanced
    with the VAE gives QwenImageControlNetPipeline's image (its posterior sample pinned to the
    mode, as above)."""
    from diffusers import QwenImageControlNetModel, QwenImageControlNetPipeline
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from safetensors.torch import save_file

    torch.manual_seed(12)
    controlnet = QwenImageControlNetModel(
        num_layers=2,
        attention_head_dim=qwen_image_family.HEAD,
        num_attention_heads=1,
        joint_attention_dim=qwen_image_family.TEXT_WIDTH,
    ).eval()
    with torch.no_grad():
        for module in (*controlnet.controlnet_blocks, controlnet.controlnet_x_embedder):
            module.weight.normal_(0, 0.05)
    name = "qwen_instantx_canny.safetensors"
    folder = qwen_models.root / "models" / "controlnet"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in controlnet.state_dict().items()}, str(folder / name))
    path, image, _ = _images(tmp_path)
    nodes = split_workflow()
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(path)}}
    nodes["cn"] = {"type": "ControlNetLoader", "inputs": {"name": name}}
    nodes["apply"] = {
        "type": "ControlNetApplyAdvanced",
        "inputs": {
            "positive": ["pos", "conditioning"],
            "control_net": ["cn", "control_net"],
            "image": ["img", "image"],
            "vae": ["vae", "vae"],
            "strength": 0.7,
        },
    }
    nodes["k"]["inputs"]["positive"] = ["apply", "positive"]
    ours = image_of(run_qwen(nodes, ["dec"]))
    pipe = qwen_models.pipe
    parts = ("scheduler", "vae", "text_encoder", "tokenizer", "transformer")
    reference_pipe = QwenImageControlNetPipeline(
        controlnet=controlnet, **{k: getattr(pipe, k) for k in parts}
    )
    reference_pipe.prompt_template_encode_start_idx = pipe.prompt_template_encode_start_idx
    monkeypatch.setattr(
        DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode()
    )
    theirs = reference(
        reference_pipe,
        prompt=PROMPT,
        control_image=image,
        controlnet_conditioning_scale=0.7,
        num_inference_steps=3,
        true_cfg_scale=1.0,
    )
    error = (ours - theirs).abs().max().item()
    assert error <= TOLERANCE
    plain = image_of(run_qwen(split_workflow(), ["dec"]))
    assert (ours - plain).abs().max().item() > max(100 * error, 1e-4)
