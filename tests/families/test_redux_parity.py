"""Flux Redux from ComfyUI's files (a SigLIP `clip_vision/` file, a `style_models/` Redux file):
CLIPVisionEncode + StyleModelApply give FluxPriorReduxPipeline's conditioning (CPU fp32, tiny
random weights, max abs diff 1e-3), and ComfyUI's flux_redux_model_example template runs end to
end and gives FluxPipeline's image for that conditioning."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import as_tensor, template
from tests.fixtures import clip_vision_files as files
from tests.fixtures import flux_family

flux_root = flux_family.flux_root
flux_models = flux_family.flux_models

TOLERANCE = 1e-3
SIZE = 64
PROMPT = "a girl walking in the wilderness"
PACKAGE = "comfyui_workflow_templates_json"
TEMPLATE = "flux_redux_model_example"
# the file names the template loads, and what the tests put there
TEMPLATE_FILES = {
    "diffusion_models/flux1-dev.safetensors": "diffusion_models/flux-dev.safetensors",
    "text_encoders/clip_l.safetensors": "text_encoders/clip_l.safetensors",
    "text_encoders/t5xxl_fp16.safetensors": "text_encoders/t5xxl.safetensors",
    "vae/ae.safetensors": "vae/ae.safetensors",
}
SIGLIP_NAME, REDUX_NAME = files.SIGLIP_FILE, files.REDUX_FILE


@pytest.fixture(scope="module")
def redux_root(flux_models: Any, flux_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny Flux files under the template's names, a tiny SigLIP and Redux beside them,
    and the reference FluxPriorReduxPipeline (sharing dev's text encoders)."""
    from diffusers import FluxPriorReduxPipeline

    root = tmp_path_factory.mktemp("redux")
    models = root / "models"
    for name, source in TEMPLATE_FILES.items():
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flux_root / "models" / source, models / name)
    shutil.copytree(flux_root / "ComfyUI", root / "ComfyUI")
    dev = flux_models["dev"].pipe
    siglip, redux = files.write_redux(models, dev.transformer.config.joint_attention_dim)
    prior = FluxPriorReduxPipeline(
        image_encoder=siglip,
        feature_extractor=files.siglip_processor(),
        image_embedder=redux,
        text_encoder=dev.text_encoder,
        tokenizer=dev.tokenizer,
        text_encoder_2=dev.text_encoder_2,
        tokenizer_2=dev.tokenizer_2,
    )
    prior.set_progress_bar_config(disable=True)
    input_dir = root / "input"
    input_dir.mkdir()
    return root, prior


def executor(root: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    return Executor(
        load_plugins(entry_points=False),
        services={"models": manager, "input_dir": root / "input"},
    )


def redux_workflow(pictures: list[str], steps: int = 3) -> dict[str, Any]:
    """Flux dev from the split files (tests/families/test_flux_parity.py's graph) with each
    picture's Redux tokens appended to the prompt (for benchmarks/bench_families_memory.py)."""
    from tests.families.test_flux_parity import split_workflow

    nodes = split_workflow("dev", steps=steps)
    nodes["vision"] = {"type": "CLIPVisionLoader", "inputs": {"name": SIGLIP_NAME}}
    nodes["style"] = {"type": "StyleModelLoader", "inputs": {"name": REDUX_NAME}}
    last = ["pos", "conditioning"]
    for index, picture in enumerate(pictures):
        nodes[f"img{index}"] = {"type": "LoadImage", "inputs": {"image": picture}}
        nodes[f"enc{index}"] = {
            "type": "CLIPVisionEncode",
            "inputs": {"clip_vision": ["vision", "clip_vision"], "image": [f"img{index}", "image"]},
        }
        nodes[f"apply{index}"] = {
            "type": "StyleModelApply",
            "inputs": {
                "conditioning": last,
                "style_model": ["style", "style_model"],
                "clip_vision_output": [f"enc{index}", "clip_vision_output"],
            },
        }
        last = [f"apply{index}", "conditioning"]
    nodes["k"]["inputs"]["positive"] = last
    return nodes


def reference_conditioning(flux: Any, prior: Any, prompt: str, images: list[Any]) -> Any:
    """FluxPipeline's prompt embeddings (T5 at 256 tokens, as Easel's), then each image's
    Redux tokens appended by FluxPriorReduxPipeline."""
    embeds, pooled, _ = flux.encode_prompt(prompt=prompt, prompt_2=prompt, max_sequence_length=256)
    for image in images:
        out = prior(image=image, prompt_embeds=embeds, pooled_prompt_embeds=pooled)
        embeds, pooled = out.prompt_embeds, out.pooled_prompt_embeds
    return embeds, pooled


@pytest.mark.slow  # the template test below checks the same conditioning in the default run
def test_style_model_apply_equals_flux_prior_redux_pipeline(
    redux_root: Any, flux_models: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, prior = redux_root
    images = files.random_images(2)
    for index, image in enumerate(images):
        image.save(root / "input" / f"ref{index}.png")
    nodes: dict[str, Any] = {
        "clip": {
            "type": "DualTextEncoderLoader",
            "inputs": {
                "name1": "t5xxl_fp16.safetensors",
                "name2": "clip_l.safetensors",
                "type": "flux",
            },
        },
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "vision": {"type": "CLIPVisionLoader", "inputs": {"name": SIGLIP_NAME}},
        "style": {"type": "StyleModelLoader", "inputs": {"name": REDUX_NAME}},
    }
    last = ["pos", "conditioning"]
    for index in range(2):
        nodes[f"img{index}"] = {"type": "LoadImage", "inputs": {"image": f"ref{index}.png"}}
        nodes[f"enc{index}"] = {
            "type": "CLIPVisionEncode",
            "inputs": {"clip_vision": ["vision", "clip_vision"], "image": [f"img{index}", "image"]},
        }
        nodes[f"apply{index}"] = {
            "type": "StyleModelApply",
            "inputs": {
                "conditioning": last,
                "style_model": ["style", "style_model"],
                "clip_vision_output": [f"enc{index}", "clip_vision_output"],
            },
        }
        last = [f"apply{index}", "conditioning"]
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    result = executor(root, monkeypatch).run(workflow, targets=["apply1"], keep_values=True)
    assert result.ok, result.failures
    ours = result.values["apply1"]["conditioning"]
    embeds, pooled = reference_conditioning(flux_models["dev"].pipe, prior, PROMPT, images)
    tokens = (files.IMAGE // files.PATCH) ** 2
    assert ours["embeds"].shape == embeds.shape == (1, 256 + 2 * tokens, embeds.shape[-1])
    assert float(embeds[:, 256:].std()) > 0.01  # real image tokens, not zeros
    assert (ours["embeds"] - embeds).abs().max().item() <= TOLERANCE
    assert (ours["pooled"] - pooled).abs().max().item() <= TOLERANCE


@pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)
def test_flux_redux_template_runs_and_equals_flux_pipeline(
    redux_root: Any, flux_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template as ComfyUI ships it (two reference images, two chained StyleModelApply,
    SamplerCustomAdvanced), made small: 64 x 64 pixels (the latent and ModelSamplingFlux's
    size), 2 steps; its image is FluxPipeline's for the Redux conditioning."""
    import numpy as np
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    root, prior = redux_root
    workflow = to_easel(template(TEMPLATE))
    nodes = workflow["nodes"]

    def only(kind: str) -> str:
        [found] = [i for i, n in nodes.items() if n["type"] == kind]
        return found

    loaders = sorted((i for i, n in nodes.items() if n["type"] == "LoadImage"), key=int)
    images = files.random_images(2, seed=11)
    for loader, image in zip(loaders, images, strict=True):
        image.save(root / "input" / nodes[loader]["inputs"]["image"])
    for node_id in (only("EmptyLatent"), only("ModelSamplingFlux")):
        set_input(workflow, f"{node_id}.width", SIZE)
        set_input(workflow, f"{node_id}.height", SIZE)
    set_input(workflow, f"{only('BasicScheduler')}.steps", 2)
    result = executor(root, monkeypatch).run(workflow, output_dir=tmp_path, keep_values=True)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    # LoadImage 40 feeds the first StyleModelApply, 47 the second: their tokens in that order
    prompt = nodes[only("TextEncode")]["inputs"]["text"]
    flux = flux_models["dev"].pipe
    embeds, pooled = reference_conditioning(flux, prior, prompt, images)
    # the conditioning the guider samples with: the second StyleModelApply's
    source, output = nodes[only("BasicGuider")]["inputs"]["conditioning"]
    assert nodes[source]["type"] == "StyleModelApply"
    ours_cond = result.values[source][output]
    assert ours_cond["embeds"].shape == embeds.shape
    assert float(embeds[:, 256:].std()) > 0.01  # real image tokens, not zeros
    assert (ours_cond["embeds"] - embeds).abs().max().item() <= TOLERANCE
    assert (ours_cond["pooled"] - pooled).abs().max().item() <= TOLERANCE
    flux.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        flux(
            prompt_embeds=embeds,
            pooled_prompt_embeds=pooled,
            height=SIZE,
            width=SIZE,
            num_inference_steps=2,
            guidance_scale=nodes[only("FluxGuidance")]["inputs"]["guidance"],
            generator=torch.Generator("cpu").manual_seed(
                int(nodes[only("RandomNoise")]["inputs"]["noise_seed"])
            ),
            output_type="np",
        ).images
    )
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255
