"""ComfyUI's own Flux.2 templates (the `comfyui-workflow-templates-json` corpus, in the dev extra)
run end to end on the tiny Flux.2 models, saved under the file names the templates load, through
custom sampling (Flux2Scheduler, CFGGuider / BasicGuider, SamplerCustomAdvanced), and give the
diffusers pipelines' image for the template's prompt, seed, guidance and (made small) size and
steps."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.families.test_flux2_parity import TOLERANCE
from tests.families.workflows import template
from tests.fixtures import flux2_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

flux2_root = flux2_family.flux2_root
flux2_models = flux2_family.flux2_models
SIZE = 64
STEPS = 2
# the file names ComfyUI's Flux.2 templates load -> the tiny models' files
TEMPLATE_FILES = {
    "diffusion_models/flux2_dev_fp8mixed.safetensors": (
        "diffusion_models/flux2-dev-tiny.safetensors"
    ),
    "text_encoders/mistral_3_small_flux2_bf16.safetensors": (
        "text_encoders/mistral-tiny.safetensors"
    ),
    "vae/full_encoder_small_decoder.safetensors": "vae/flux2-vae-small-decoder.safetensors",
    "diffusion_models/flux-2-klein-base-4b.safetensors": (
        "diffusion_models/flux-2-klein-tiny.safetensors"
    ),
    "diffusion_models/flux-2-klein-4b-fp8.safetensors": (
        "diffusion_models/flux-2-klein-tiny.safetensors"
    ),
    "text_encoders/qwen_3_4b.safetensors": "text_encoders/qwen3-tiny.safetensors",
    "diffusion_models/flux-2-klein-9b-kv-fp8.safetensors": (
        "diffusion_models/flux-2-klein-tiny.safetensors"
    ),
    "text_encoders/qwen_3_8b_fp8mixed.safetensors": "text_encoders/qwen3-tiny.safetensors",
    "vae/flux2-vae.safetensors": "vae/flux2-vae.safetensors",
}


@pytest.fixture(scope="module")
def template_root(
    flux2_models: Any, flux2_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("flux2-templates")
    for name, source in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flux2_root / "models" / source, root / "models" / name)
    shutil.copytree(flux2_root / "ComfyUI", root / "ComfyUI")
    # the dev template's Turbo LoRA, behind a switch that is off: the file must exist for the
    # loader's choices, its weights are never applied
    from safetensors.torch import save_file

    (root / "models" / "loras").mkdir(parents=True)
    save_file(
        {"diffusion_model.img_in.lora_A.weight": torch.zeros(1, 128)},
        str(root / "models" / "loras" / "Flux_2-Turbo-LoRA_comfyui.safetensors"),
    )
    return root


def run_template(
    workflow: dict[str, Any], root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Run a converted template on the tiny models; its saved image as [1, 3, H, W]."""
    from PIL import Image as PILImage

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255


def of_type(nodes: dict[str, Any], kind: str) -> list[str]:
    return [i for i, n in nodes.items() if n["type"] == kind]


def test_flux2_klein_template_equals_flux2_klein_pipeline(
    template_root: Path,
    flux2_root: Path,
    flux2_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """image_flux2_klein_text_to_image: CFGGuider (cfg 5, the empty negative), Flux2Scheduler,
    EmptyFlux2LatentImage, sizes from Int nodes."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    workflow = to_easel(template("image_flux2_klein_text_to_image"))
    nodes = workflow["nodes"]
    for node_id in of_type(nodes, "Int"):
        if nodes[node_id]["inputs"]["value"] == 1024:
            set_input(workflow, f"{node_id}.value", SIZE)
    [scheduler] = of_type(nodes, "Flux2Scheduler")
    set_input(workflow, f"{scheduler}.steps", STEPS)
    monkeypatch.setenv("EASEL_MISTRAL_TOKENIZER", str(flux2_family.mistral_folder(flux2_root)))
    ours = run_template(workflow, template_root, tmp_path, monkeypatch)

    [guider] = of_type(nodes, "CFGGuider")
    [noise] = of_type(nodes, "RandomNoise")
    [prompt] = [n["inputs"]["value"] for n in nodes.values() if n["type"] == "String"]
    cfg = float(nodes[guider]["inputs"]["cfg"])
    seed = int(nodes[noise]["inputs"]["noise_seed"])
    pipe = flux2_models["klein"].pipe
    theirs = pipe(
        prompt=prompt,
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        guidance_scale=cfg,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pt",
    ).images
    assert cfg == 5.0
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255


def test_flux2_dev_template_equals_flux2_pipeline(
    template_root: Path,
    flux2_root: Path,
    flux2_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """image_flux2_text_to_image: BasicGuider with FluxGuidance 4, the Turbo LoRA switched off,
    the small-decoder VAE (full_encoder_small_decoder)."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    workflow = to_easel(template("image_flux2_text_to_image"))
    nodes = workflow["nodes"]
    for node_id in of_type(nodes, "EmptyFlux2LatentImage") + of_type(nodes, "Flux2Scheduler"):
        set_input(workflow, f"{node_id}.width", SIZE)
        set_input(workflow, f"{node_id}.height", SIZE)
    # the step count comes from the Int the (off) Turbo switch picks
    [switch] = of_type(nodes, "Boolean")
    assert nodes[switch]["inputs"]["value"] is False
    for node_id in of_type(nodes, "Int"):
        if nodes[node_id]["inputs"]["value"] == 20:
            set_input(workflow, f"{node_id}.value", STEPS)
    monkeypatch.setenv("EASEL_MISTRAL_TOKENIZER", str(flux2_family.mistral_folder(flux2_root)))
    ours = run_template(workflow, template_root, tmp_path, monkeypatch)

    [guidance] = of_type(nodes, "FluxGuidance")
    [noise] = of_type(nodes, "RandomNoise")
    [encode] = of_type(nodes, "TextEncode")
    dev = flux2_models["dev"]
    pipe = type(dev.pipe)(**{**dev.pipe.components, "vae": dev.small_decoder_vae})
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        prompt=nodes[encode]["inputs"]["text"],
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        guidance_scale=float(nodes[guidance]["inputs"]["guidance"]),
        generator=torch.Generator("cpu").manual_seed(int(nodes[noise]["inputs"]["noise_seed"])),
        output_type="pt",
    ).images
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255


def test_flux2_klein_edit_template_runs(
    template_root: Path,
    flux2_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """image_flux2_klein_image_edit_4b_distilled (LoadImage -> ScaleToTotalPixels ->
    VAEEncode -> ReferenceLatent on both sides, ConditioningZeroOut, CFGGuider cfg 1) runs on
    the tiny models, and its reference image changes the result."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input
    from tests.families.test_sd_parity import _inpaint_inputs

    path, _, _ = _inpaint_inputs(tmp_path)
    workflow = to_easel(template("image_flux2_klein_image_edit_4b_distilled"))
    nodes = workflow["nodes"]
    for node_id in of_type(nodes, "LoadImage"):
        set_input(workflow, f"{node_id}.image", str(path))
    for node_id in of_type(nodes, "ScaleToTotalPixels"):
        set_input(workflow, f"{node_id}.megapixels", 0.01)  # about 100 x 100
    [scheduler] = of_type(nodes, "Flux2Scheduler")
    set_input(workflow, f"{scheduler}.steps", STEPS)
    monkeypatch.setenv("EASEL_MISTRAL_TOKENIZER", str(flux2_family.mistral_folder(flux2_root)))
    edited = run_template(workflow, template_root, tmp_path / "edit", monkeypatch)
    for node_id in of_type(nodes, "ReferenceLatent"):
        del workflow["nodes"][node_id]["inputs"]["latent"]
    plain = run_template(workflow, template_root, tmp_path / "plain", monkeypatch)
    assert edited.shape == plain.shape and edited.shape[-1] % 16 == 0
    assert float(edited.std()) > 0.01
    assert (edited - plain).abs().max().item() > 1 / 255  # more than PNG rounding


def test_flux2_klein_kv_template_runs(
    template_root: Path,
    flux2_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """image_flux2_klein_9b_kv_image_edit (two reference images in subgraphs, FluxKVCache,
    CFGGuider cfg 1) runs on the tiny models."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input
    from tests.families.test_sd_parity import _inpaint_inputs

    path, _, _ = _inpaint_inputs(tmp_path)
    workflow = to_easel(template("image_flux2_klein_9b_kv_image_edit"))
    nodes = workflow["nodes"]
    assert of_type(nodes, "FluxKVCache")
    for node_id in of_type(nodes, "LoadImage"):
        set_input(workflow, f"{node_id}.image", str(path))
    for node_id in of_type(nodes, "ScaleToTotalPixels"):
        set_input(workflow, f"{node_id}.megapixels", 0.01)  # about 100 x 100
    [scheduler] = of_type(nodes, "Flux2Scheduler")
    set_input(workflow, f"{scheduler}.steps", STEPS)
    ours = run_template(workflow, template_root, tmp_path / "kv", monkeypatch)
    assert ours.shape[-1] % 16 == 0 and float(ours.std()) > 0.01
