"""ComfyUI's own Krea 2 templates (the `comfyui-workflow-templates-json` corpus, in the dev
extra): `image_krea2_turbo_t2i` runs end to end on the tiny Krea 2 models, saved under the file
names the template loads, and gives Krea2Pipeline's image for the template's prompt, seed,
sampler and cfg (size and steps made small; the template's prompt enhancement, a TextGenerate
on the Qwen3-VL encoder, switched off with its own Boolean so that the prompt is the
template's). The int8 templates' transformer file (ComfyUI's int8 layout) needs the
`quantized` extra: without comfy-kitchen the error names the file, the format and the extra
(tests/models/test_quantized_files.py runs the int8 template with it)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_krea2_parity import TOLERANCE
from tests.families.workflows import as_tensor, template
from tests.fixtures import krea2_family, quantized_files

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

krea2_models = krea2_family.krea2_models
SIZE = 64
STEPS = 2
# the file names ComfyUI's Krea 2 templates load, and the tiny files standing in for them
TEMPLATE_FILES = {
    "diffusion_models/krea2_turbo_fp8_scaled.safetensors": "diffusion_models/krea2_turbo",
    "text_encoders/qwen3vl_4b_fp8_scaled.safetensors": "text_encoders/qwen3vl_4b",
    "vae/qwen_image_vae.safetensors": "vae/qwen_image_vae",
}
INT8_FILE = "diffusion_models/krea2_turbo_int8_convrot.safetensors"


@pytest.fixture(scope="module")
def template_root(krea2_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("krea2-templates")
    source = krea2_models.root
    for name, tiny in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "models" / f"{tiny}.safetensors", root / "models" / name)
    shutil.copytree(source / "ComfyUI", root / "ComfyUI")
    # an int8 transformer in ComfyUI's layout (one layer int8 with its scale and marker)
    state = load_file(str(source / "models" / "diffusion_models" / "krea2_turbo.safetensors"))
    key = "model.diffusion_model.blocks.0.attn.wq.weight"
    save_file(quantized_files.int8_by_hand(state, key), str(root / "models" / INT8_FILE))
    # the style LoRA the template's switch leaves off: present, so the workflow validates,
    # never read (a Switch runs only the branch it picks)
    (root / "models" / "loras").mkdir(parents=True)
    save_file(
        {"unused": torch.zeros(1)}, str(root / "models" / "loras" / "krea2_darkbrush.safetensors")
    )
    return root


def _only(nodes: dict[str, Any], kind: str, **inputs: Any) -> str:
    found = [
        i
        for i, n in nodes.items()
        if n["type"] == kind and all(n["inputs"].get(k) == v for k, v in inputs.items())
    ]
    assert len(found) == 1, (kind, inputs, found)
    return found[0]


def prepared(name: str) -> dict[str, Any]:
    """The template converted, made small, its prompt enhancement off."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    workflow = to_easel(template(name))
    nodes = workflow["nodes"]
    latent, sampler = _only(nodes, "EmptyLatent"), _only(nodes, "KSampler")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", STEPS)
    # the Switch between the enhanced prompt (TextGenerate) and the user's, and its Boolean
    generate = _only(nodes, "TextGenerate")
    [switch] = [
        n for n in nodes.values() if n["inputs"].get("on_true") == [generate, "generated_text"]
    ]
    set_input(workflow, f"{switch['inputs']['switch'][0]}.value", False)
    return workflow


def run(workflow: dict[str, Any], root: Path, tmp_path: Path) -> Any:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [root / "models", root / "ComfyUI"]
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    return executor.run(workflow, output_dir=tmp_path)


def test_krea2_turbo_template_runs_and_equals_krea2_pipeline(
    template_root: Path, krea2_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    from PIL import Image as PILImage

    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = prepared("image_krea2_turbo_t2i")
    nodes = workflow["nodes"]
    inputs = nodes[_only(nodes, "KSampler")]["inputs"]
    assert (inputs["sampler_name"], inputs["scheduler"], inputs["cfg"]) == ("euler", "simple", 1)
    result = run(workflow, template_root, tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    # the prompt the template encodes: its user prompt String (the enhancer is off)
    [user] = [
        n["inputs"]["value"]
        for n in nodes.values()
        if n["type"] == "String" and n["inputs"]["value"].startswith("A high-resolution")
    ]
    pipe = krea2_models.pipe
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=user,
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            guidance_scale=0.0,  # cfg 1
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
        ).images
    )
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


def test_krea2_int8_template_without_comfy_kitchen_names_file_and_extra(
    template_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quantized_files.without_comfy_kitchen(monkeypatch)
    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = prepared("image_krea2_turbo_t2i_int8")
    result = run(workflow, template_root, tmp_path)
    assert not result.ok
    [failure] = [f for f in result.failures if f.node_type == "DiffusionModelLoader"]
    assert "krea2_turbo_int8_convrot.safetensors" in failure.message
    assert "int8_tensorwise" in failure.message and "blocks.0.attn.wq" in failure.message
    assert "pip install 'easel[quantized]'" in failure.message
    assert failure.input == "name"  # a clear error on the file input, not a crash
