"""ComfyUI's Anima LLLite templates run end to end on the tiny Anima models and tiny LLLite
patches, saved under the file names the templates load:

- `image_anima_lllite_any_control_to_image`: LoadImage -> Canny -> ImageInvert -> a resize to
  total pixels -> AnimaLLLiteApply (ModelPatchLoader) in a subgraph with the Anima loaders,
  the turbo-LoRA switches (off) and KSampler;
- `image_anima_lllite_image_inpainting` (slow run): LoadImage -> Painter (the canvas drawing,
  a PNG named "painter/... [temp]") -> its IMAGE and MASK into the inpainting LLLite patch,
  the turbo LoRA switched on;
- `image_anima_lllite_depth_control_to_image` (slow run): the control is Depth Anything 3's
  depth map of the loaded picture (DA3 nodes, a tiny model).

There is no diffusers reference for LLLite (tests/families/test_anima_lllite.py holds it to a
direct computation); here the control must change the image: the same template at strength 0
gives another one. Size and steps are made small."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.families.workflows import only, stage_template_files, template
from tests.fixtures import anima_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

anima_models = anima_family.anima_models
SIZE = 64
STEPS = 2
FILES = {
    "diffusion_models/anima-base-v1.0.safetensors": anima_family.FILES["transformer"],
    "text_encoders/qwen_3_06b_base.safetensors": anima_family.FILES["text_encoder"],
    "vae/qwen_image_vae.safetensors": anima_family.FILES["vae"],
    "loras/anima-turbo-lora-v0.2.safetensors": anima_family.FILES["lora"],
    "model_patches/anima-lllite-any-test-like-v2.safetensors": anima_family.LLLITE_FILES["control"],
    "model_patches/anima-lllite-inpainting-v2.safetensors": anima_family.LLLITE_FILES["inpaint"],
    "model_patches/anima-lllite-depth-1.safetensors": anima_family.LLLITE_FILES["control"],
}


def write_picture(path: Path, size: int, seed: int) -> None:
    """A picture with some structure (a bright disc on a noisy ground) for Canny to find."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 3) ** 2) < (size / 4) ** 2
    pixels = rng.integers(0, 60, (size, size, 3)) + disc[..., None] * 180
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels.astype(np.uint8)).save(path)


def write_drawing(path: Path, size: int) -> None:
    """The Painter canvas's PNG: red strokes (opaque) on a transparent ground."""
    pixels = np.zeros((size, size, 4), dtype=np.uint8)
    pixels[size // 4 : size // 2, size // 4 : 3 * size // 4] = (255, 0, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels, mode="RGBA").save(path)


def executor_for(roots: list[Path]) -> Any:
    """An executor on the CPU in fp32 with its models under `roots` (one per test, so that a
    second run reuses what did not change)."""
    import torch

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    return Executor(load_plugins(entry_points=False), services={"models": manager})


def run_for_image(workflow: dict[str, Any], executor: Any, out_dir: Path) -> Any:
    """Run `workflow`: the image its SaveImage wrote (previews and the comparison write files
    too), as a [1, 3, H, W] tensor in [0, 1]."""
    import torch

    result = executor.run(workflow, output_dir=out_dir)
    assert result.ok, result.failures
    [saved] = result.ui[only(workflow["nodes"], "SaveImage")]["files"]
    pixels = np.asarray(PILImage.open(out_dir / saved).convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255


def prepared(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: Any) -> Any:
    """The converted template and the model roots, its input files in the working folder."""
    from easel.comfy.convert import to_easel

    roots = stage_template_files(models.root, FILES, tmp_path / "root", monkeypatch)
    monkeypatch.chdir(tmp_path)  # LoadImage and Painter read paths when run without a server
    return to_easel(template(name)), roots


def test_any_control_template_runs_and_the_control_steers_it(
    anima_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.workflow_edit import set_input

    workflow, roots = prepared(
        "image_anima_lllite_any_control_to_image", tmp_path, monkeypatch, anima_models
    )
    nodes = workflow["nodes"]
    load = only(nodes, "LoadImage")
    write_picture(tmp_path / nodes[load]["inputs"]["image"], 96, 1)
    set_input(workflow, f"{only(nodes, 'ResizeImageMask')}.megapixels", 0.01)
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    steps_switch = nodes[nodes[sampler]["inputs"]["steps"][0]]["inputs"]
    set_input(workflow, f"{steps_switch['on_false'][0]}.value", STEPS)
    executor = executor_for(roots)
    ours = run_for_image(workflow, executor, tmp_path / "out")
    set_input(workflow, f"{only(nodes, 'AnimaLLLiteApply')}.strength", 0.0)
    plain = run_for_image(workflow, executor, tmp_path / "plain")
    assert ours.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - plain).abs().max().item() > 0.02


@pytest.mark.slow
def test_inpainting_template_with_the_painter_runs_and_the_mask_steers_it(
    anima_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.nodes.painter import drawing_name
    from easel.workflow_edit import set_input

    workflow, roots = prepared(
        "image_anima_lllite_image_inpainting", tmp_path, monkeypatch, anima_models
    )
    nodes = workflow["nodes"]
    # the template's only ResizeImageMaskNode is a spare (nothing linked in or out, never run
    # by ComfyUI): the importer leaves it out, so the template runs as it is
    assert not [v for v in nodes.values() if v["type"] == "ResizeImageMask"]
    write_picture(tmp_path / nodes[only(nodes, "LoadImage")]["inputs"]["image"], SIZE, 2)
    painter = only(nodes, "Painter")
    drawing = drawing_name(nodes[painter]["inputs"]["mask"])
    assert drawing.startswith("painter/") and drawing.endswith(".png")
    write_drawing(tmp_path / drawing, SIZE)
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    steps_switch = nodes[nodes[sampler]["inputs"]["steps"][0]]["inputs"]
    set_input(workflow, f"{steps_switch['on_true'][0]}.value", STEPS)  # the turbo LoRA is on
    executor = executor_for(roots)
    ours = run_for_image(workflow, executor, tmp_path / "out")
    set_input(workflow, f"{painter}.mask", "")  # no drawing: an all-zero mask
    unmasked = run_for_image(workflow, executor, tmp_path / "unmasked")
    assert ours.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - unmasked).abs().max().item() > 0.02


@pytest.mark.slow
def test_a_missing_drawing_is_named(
    anima_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow, roots = prepared(
        "image_anima_lllite_image_inpainting", tmp_path, monkeypatch, anima_models
    )
    executor = executor_for(roots)
    painter = only(workflow["nodes"], "Painter")
    with pytest.raises(Exception) as error:
        executor.run(workflow, targets=[painter])
    message = str(error.value)
    assert painter in message and "mask" in message and "painter/painter-694" in message


@pytest.mark.slow
def test_depth_control_template_runs_with_depth_anything_3(
    anima_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`image_anima_lllite_depth_control_to_image`: LoadImage -> Depth Anything 3 (a tiny
    Mono-Large, tests/fixtures/da3_files.py) -> DA3Render's depth map -> AnimaLLLiteApply."""
    from easel.workflow_edit import set_input
    from tests.fixtures import da3_files

    workflow, roots = prepared(
        "image_anima_lllite_depth_control_to_image", tmp_path, monkeypatch, anima_models
    )
    nodes = workflow["nodes"]
    da3 = nodes[only(nodes, "LoadDA3Model")]["inputs"]["model_name"]
    da3_files.write(tmp_path / "root", da3, da3_files.comfy_state())
    write_picture(tmp_path / nodes[only(nodes, "LoadImage")]["inputs"]["image"], 96, 3)
    set_input(workflow, f"{only(nodes, 'ResizeImageMask')}.megapixels", 0.01)
    set_input(workflow, f"{only(nodes, 'DA3Inference')}.resolution", 140)  # its least
    latent, sampler = only(nodes, "EmptyLatent"), only(nodes, "KSampler")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    steps_switch = nodes[nodes[sampler]["inputs"]["steps"][0]]["inputs"]
    set_input(workflow, f"{steps_switch['on_false'][0]}.value", STEPS)
    executor = executor_for(roots)
    ours = run_for_image(workflow, executor, tmp_path / "out")
    set_input(workflow, f"{only(nodes, 'AnimaLLLiteApply')}.strength", 0.0)
    plain = run_for_image(workflow, executor, tmp_path / "plain")
    assert ours.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - plain).abs().max().item() > 0.02
