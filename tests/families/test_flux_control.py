"""Flux.1 Canny/Depth (control models: 128 input channels, the control image's latent beside the
latent) from ComfyUI's diffusion-model file, fed by InstructPixToPixConditioning, gives
diffusers' FluxControlPipeline image (CPU fp32, tiny random weights, max abs pixel diff 1e-3);
ComfyUI's `flux_canny_model_example` template runs end to end on the tiny models."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from easel.models.families import flux
from easel.models.families.registry import by_name
from tests.families.test_flux_parity import PROMPT, TOLERANCE, reference, split_workflow
from tests.families.workflows import SIZE, image_of
from tests.fixtures import flux_control_family, flux_family

flux_root = flux_family.flux_root
flux_models = flux_family.flux_models
flux_manager = flux_family.flux_manager
run_flux = flux_family.run_flux
flux_control = flux_control_family.flux_control

TEMPLATES = "comfyui_workflow_templates_json"


def _picture(folder: Path, width: int = SIZE, height: int = SIZE) -> tuple[Path, Any]:
    """An opaque test picture (a gradient with a bright square) and its PIL image."""
    import numpy as np
    from PIL import Image as PILImage

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    rgb[height // 4 : height // 2, width // 4 : width // 2] = 255
    path = folder / f"control-{width}x{height}.png"
    image = PILImage.fromarray(rgb, "RGB")
    image.save(path)
    return path, image


def control_workflow(image: Path, *, guidance: float = 30.0, steps: int = 3) -> dict[str, Any]:
    """The Canny template's shape without the edge detector: UNETLoader (the control model),
    CLIPTextEncodeFlux, FluxGuidance-like guidance, InstructPixToPixConditioning, KSampler on
    its latent, VAEDecode."""
    nodes = split_workflow("dev", guidance=guidance, steps=steps)
    nodes["unet"]["inputs"]["name"] = flux_control_family.CONTROL_FILE
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(image)}}
    nodes["ip2p"] = {
        "type": "InstructPixToPixConditioning",
        "inputs": {
            "positive": ["pos", "conditioning"],
            "negative": ["pos", "conditioning"],
            "vae": ["vae", "vae"],
            "image": ["img", "image"],
        },
    }
    nodes["k"]["inputs"].update(positive=["ip2p", "positive"], latent=["ip2p", "latent"])
    del nodes["lat"]
    return nodes


def _noise(seed: int = 42, size: int = SIZE) -> Any:
    """Easel's initial noise for `seed`, packed: FluxControlPipeline encodes the control image
    (drawing from the generator) before it draws its latents, so it is handed these."""
    from easel.models.flux_denoiser import pack

    noise = torch.randn(
        (1, 16, size // 8, size // 8), generator=torch.Generator("cpu").manual_seed(seed)
    )
    return pack(noise)


# FLUX.1-Canny-dev's and -Depth-dev's transformer/config.json (the architecture only)
RELEASED_CONTROL = {
    "patch_size": 1,
    "in_channels": 128,
    "out_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}


def test_released_control_model_is_recognised_with_its_config() -> None:
    """The released Canny/Depth layout (meta tensors: no weights) is `flux-control`, run by
    FluxControlPipeline, and its config reads back off the shapes."""
    from diffusers import FluxTransformer2DModel

    from tests.fixtures.flux_family import transformer_bfl

    with torch.device("meta"):
        transformer = FluxTransformer2DModel(**RELEASED_CONTROL)
    state = transformer_bfl(transformer)
    family, evidence = flux.recognise(state) or (None, ())
    assert family is flux.FLUX_CONTROL is by_name("flux-control")
    assert "128 input channels: Canny/Depth" in evidence
    assert family.pipeline_class == "FluxControlPipeline" and family.guidance_embeds
    config = flux.transformer_config(state)
    assert {k: config[k] for k in ("in_channels", "out_channels", "guidance_embeds")} == {
        "in_channels": 128,
        "out_channels": 64,
        "guidance_embeds": True,
    }
    assert flux.folder_family(transformer.config) is flux.FLUX_CONTROL
    assert flux.folder_family({"in_channels": 384}) is flux.FLUX_FILL  # Fill is still Fill


def test_control_model_with_instruct_pix2pix_conditioning_equals_flux_control_pipeline(
    flux_control: Any, run_flux: Any, tmp_path: Path
) -> None:
    """The control model loaded from its ComfyUI file, the image attached by
    InstructPixToPixConditioning, equals FluxControlPipeline given the same image as
    `control_image`; another control image gives another picture."""
    path, picture = _picture(tmp_path)
    ours = image_of(run_flux(control_workflow(path), ["dec"]))
    theirs = reference(
        flux_control.pipe,
        prompt=PROMPT,
        control_image=picture,
        num_inference_steps=3,
        guidance_scale=30.0,
        latents=_noise(),
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    other = tmp_path / "other.png"
    picture.transpose(0).save(other)  # mirrored: the control image is seen
    mirrored = image_of(run_flux(control_workflow(other), ["dec"]))
    assert (ours - mirrored).abs().max().item() > TOLERANCE


def test_diffusers_control_folder_gives_the_split_files_image(
    flux_control: Any, flux_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CheckpointLoader on a diffusers FluxControlPipeline folder (its transformer's 128 input
    channels make it `flux-control`) equals the ComfyUI split files."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    flux_control.pipe.save_pretrained(str(tmp_path / "diffusers" / "flux-canny"))
    roots = [tmp_path / "diffusers", flux_root / "models", flux_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    path, _ = _picture(tmp_path)
    split = control_workflow(path)
    folder = {k: v for k, v in split.items() if k not in ("unet", "clip", "vae")}
    folder["ckpt"] = {"type": "CheckpointLoader", "inputs": {"name": "flux-canny"}}
    folder["pos"] = {**split["pos"], "inputs": {**split["pos"]["inputs"], "clip": ["ckpt", "clip"]}}
    folder["ip2p"] = {
        **split["ip2p"],
        "inputs": {**split["ip2p"]["inputs"], "vae": ["ckpt", "vae"]},
    }
    folder["k"] = {**split["k"], "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}}
    folder["dec"] = {**split["dec"], "inputs": {**split["dec"]["inputs"], "vae": ["ckpt", "vae"]}}
    images = [
        image_of(
            executor.run(
                {"format": "easel.workflow", "version": 1, "nodes": nodes},
                targets=["dec"],
                keep_values=True,
            )
        )
        for nodes in (split, folder)
    ]
    assert float(images[0].std()) > 0.01
    assert torch.equal(images[0], images[1])


def test_instruct_pix2pix_conditioning_crops_and_returns_an_empty_latent(
    run_flux: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As ComfyUI's node: the image is centre-cropped to the VAE factor (with a warning), its
    latent goes to both prompts, and the latent returned is zeros of that size."""
    path, _ = _picture(tmp_path, width=70, height=52)
    nodes = control_workflow(path)
    nodes["neg"] = {
        "type": "TextEncodeFlux",
        "inputs": {"clip": ["clip", "clip"], "clip_l": "", "t5xxl": "", "guidance": 30.0},
    }
    nodes["ip2p"]["inputs"]["negative"] = ["neg", "conditioning"]
    with caplog.at_level(logging.WARNING):
        result = run_flux(nodes, ["ip2p"])
    assert result.status == "succeeded", result.failures
    out = result.values["ip2p"]
    latent = out["latent"]["samples"]
    assert tuple(latent.shape) == (1, 16, 6, 8) and not latent.any()  # 64x48 pixels
    positive = out["positive"]["concat_latent_image"]
    negative = out["negative"]["concat_latent_image"]
    assert tuple(positive.shape) == (1, 16, 6, 8) and positive.abs().sum() > 0
    assert torch.equal(positive, negative)
    assert out["negative"]["embeds"].shape == out["positive"]["embeds"].shape
    assert "cropped the image from 70x52 to 64x48" in caplog.text


def test_control_model_without_a_control_image_is_a_clear_error(
    flux_control: Any, run_flux: Any
) -> None:
    nodes = split_workflow("dev")
    nodes["unet"]["inputs"]["name"] = flux_control_family.CONTROL_FILE
    result = run_flux(nodes, ["dec"])
    assert result.status == "failed"
    [failure] = result.failures
    assert failure.node == "k"
    assert "Canny/Depth" in failure.message
    assert "InstructPixToPixConditioning" in failure.message


def test_control_image_of_another_size_than_the_latent_is_a_clear_error(
    flux_control: Any, run_flux: Any, tmp_path: Path
) -> None:
    path, _ = _picture(tmp_path)
    nodes = control_workflow(path)
    nodes["lat"] = {"type": "EmptyLatent", "inputs": {"width": 32, "height": 32}}
    nodes["k"]["inputs"]["latent"] = ["lat", "latent"]
    result = run_flux(nodes, ["dec"])
    assert result.status == "failed"
    [failure] = result.failures
    assert failure.node == "k"
    assert "16 tokens" in failure.message and "4 tokens" not in failure.message.split(",")[0]
    assert "same image" in failure.message


def test_hidream_refuses_instruct_pix2pix_conditioning() -> None:
    """HiDream E1 (which ComfyUI feeds through InstructPixToPixConditioning) has no diffusers
    pipeline to hold an implementation to: its conditioning is refused, saying so, rather
    than silently ignored."""
    from easel.models.hidream_denoiser import HiDreamNetwork

    config = SimpleNamespace(caption_channels=(4, 6), llama_layers=[0], text_emb_dim=8)
    network = HiDreamNetwork(SimpleNamespace(config=config), None, None)
    cond = {
        "t5": torch.zeros(1, 3, 4),
        "llama": torch.zeros(1, 1, 3, 6),
        "pooled": torch.zeros(1, 8),
        "concat_latent_image": torch.zeros(1, 16, 8, 8),
    }
    with pytest.raises(ValueError, match=r"HiDream E1 .*diffusers has no HiDream editing"):
        network.condition(cond, 1, "cpu", torch.float32, pixel_size=(64, 64))


@pytest.mark.skipif(
    importlib.util.find_spec(TEMPLATES) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)
def test_flux_canny_template_runs_and_equals_flux_control_pipeline(
    flux_control: Any, flux_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's `flux_canny_model_example` (LoadImage -> Canny -> InstructPixToPixConditioning,
    FluxGuidance 30, ConditioningZeroOut negative, KSampler euler) runs on the tiny models
    saved under the template's file names, and gives FluxControlPipeline's image for the
    template's prompt and seed with the Canny edges as control image (steps made small; the
    comparison on the pipeline's schedule, "simple", the template's "normal" run as it is)."""
    import numpy as np
    from kornia.filters import canny
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    spec = importlib.util.find_spec(TEMPLATES)
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).parent / "templates" / "flux_canny_model_example.json"
    workflow = to_easel(json.loads(source.read_text(encoding="utf-8")))
    root = tmp_path / "root"
    for name, ours in {
        "diffusion_models/flux1-canny-dev.safetensors": flux_control_family.CONTROL_FILE,
        "text_encoders/clip_l.safetensors": "clip_l.safetensors",
        "text_encoders/t5xxl_fp16.safetensors": "t5xxl.safetensors",
        "vae/ae.safetensors": "ae.safetensors",
    }.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flux_root / "models" / name.split("/")[0] / ours, root / "models" / name)
    shutil.copytree(flux_root / "ComfyUI", root / "ComfyUI")
    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))

    nodes = workflow["nodes"]
    assert {"InstructPixToPixConditioning", "Canny", "FluxGuidance"} <= {
        n["type"] for n in nodes.values()
    }
    [loader] = [n for n in nodes.values() if n["type"] == "LoadImage"]
    (tmp_path / "input").mkdir()
    _, picture = _picture(tmp_path / "input")
    picture.save(tmp_path / "input" / loader["inputs"]["image"])
    [sampler] = [i for i, n in nodes.items() if n["type"] == "KSampler"]
    set_input(workflow, f"{sampler}.steps", 2)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(
        load_plugins(entry_points=False),
        services={"models": manager, "input_dir": tmp_path / "input"},
    )
    [save] = [i for i, n in nodes.items() if n["type"] == "SaveImage"]

    def saved_image() -> Any:
        result = executor.run(workflow, output_dir=tmp_path / "output")
        assert result.ok, result.failures
        [saved] = result.ui[save]["files"]
        pixels = np.asarray(PILImage.open(tmp_path / "output" / saved).convert("RGB"))
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    as_is = saved_image()  # the template's own schedule ("normal")
    assert as_is.shape == (1, 3, SIZE, SIZE) and float(as_is.std()) > 0.01
    # "simple" is FluxPipeline's (and FluxControlPipeline's) schedule: compare on that one
    set_input(workflow, f"{sampler}.scheduler", "simple")
    ours = saved_image()

    inputs = nodes[sampler]["inputs"]
    [edges_node] = [n for n in nodes.values() if n["type"] == "Canny"]
    [guidance] = [n for n in nodes.values() if n["type"] == "FluxGuidance"]
    [encoder] = [n for n in nodes.values() if n["type"] == "TextEncode"]
    rgb = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)[None].float() / 255
    low, high = edges_node["inputs"]["low_threshold"], edges_node["inputs"]["high_threshold"]
    _, edges = canny(rgb, low, high)
    control = edges.repeat(1, 3, 1, 1) * 2 - 1  # a tensor goes to the VAE as it is: [-1, 1]
    pipe = flux_control.pipe
    theirs = reference(
        pipe,
        prompt=encoder["inputs"]["text"],
        control_image=control,
        num_inference_steps=2,
        guidance_scale=float(guidance["inputs"]["guidance"]),
        latents=_noise(int(inputs["seed"])),
    )
    assert (inputs["sampler_name"], inputs["cfg"]) == ("euler", 1)
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255
