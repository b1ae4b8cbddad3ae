"""ComfyUI's own Ideogram 4 templates (the `comfyui-workflow-templates-json` corpus, in the dev
extra): `image_ideogram4_t2i` runs end to end on the tiny Ideogram 4 models, saved under the file
names the template loads, and gives Ideogram4Pipeline's image for the template's structured JSON
prompt, seed, schedule (its Default preset), DualModelGuider cfg 7 and CFGOverride 3 from 70%
(the latent made small, the steps six: the last level falls under 0.3, where the override
applies). In the default run the prompt is one line of the template's JSON (its `"medium"`):
the tiny byte-level tokenizer makes the whole 3,000-character prompt 3,000 tokens, which
`--slow` runs.
The int8 template's transformer files (ComfyUI's int8 layout) need the `quantized` extra:
without comfy-kitchen the error names the files, the format and the extra."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_ideogram4_parity import TOLERANCE
from tests.families.workflows import as_tensor, only, template
from tests.fixtures import ideogram4_family, quantized_files
from tests.fixtures.ideogram4_family import FILES, SIZE

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

ideogram4_models = ideogram4_family.ideogram4_models
STEPS = 6
# the file names ComfyUI's Ideogram 4 templates load, and the tiny files standing in for them
TEMPLATE_FILES = {
    "diffusion_models/ideogram4_fp8_scaled.safetensors": FILES["transformer"],
    "diffusion_models/ideogram4_unconditional_fp8_scaled.safetensors": FILES["unconditional"],
    "text_encoders/qwen3vl_8b_fp8_scaled.safetensors": FILES["text_encoder"],
    "vae/flux2-vae.safetensors": FILES["vae"],
}
INT8_FILES = (
    "diffusion_models/ideogram4_int8_convrot.safetensors",
    "diffusion_models/ideogram4_unconditional_int8_convrot.safetensors",
)


@pytest.fixture(scope="module")
def template_root(ideogram4_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("ideogram4-templates")
    source = ideogram4_models.root
    for name, tiny in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        kind = name.split("/")[0]
        shutil.copyfile(source / "models" / kind / tiny, root / "models" / name)
    shutil.copytree(source / "ComfyUI", root / "ComfyUI")
    # int8 transformers in ComfyUI's layout (one layer int8 with its scale and marker)
    for int8, tiny in zip(INT8_FILES, (FILES["transformer"], FILES["unconditional"]), strict=True):
        state = load_file(str(source / "models" / "diffusion_models" / tiny))
        key = "model.diffusion_model.layers.0.attention.qkv.weight"
        save_file(quantized_files.int8_by_hand(state, key), str(root / "models" / int8))
    return root


def prepared(name: str) -> dict[str, Any]:
    """The template converted, its latent made small and its steps few."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    workflow = to_easel(template(name))
    nodes = workflow["nodes"]
    latent = only(nodes, "EmptyFlux2LatentImage")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{only(nodes, 'Ideogram4Scheduler')}.steps", STEPS)
    return workflow


def run(workflow: dict[str, Any], root: Path, tmp_path: Path) -> Any:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [root / "models", root / "ComfyUI"]
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    return executor.run(workflow, output_dir=tmp_path, keep_values=True)


@pytest.mark.parametrize("whole_prompt", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_ideogram4_template_runs_and_equals_ideogram4_pipeline(
    template_root: Path,
    ideogram4_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    whole_prompt: bool,
) -> None:
    import numpy as np
    from PIL import Image as PILImage

    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = prepared("image_ideogram4_t2i")
    nodes = workflow["nodes"]
    encode = only(nodes, "TextEncode")
    if not whole_prompt:
        from easel.workflow_edit import set_input

        [medium] = [
            line.strip()
            for line in nodes[encode]["inputs"]["text"].splitlines()
            if line.strip().startswith('"medium"')
        ]
        set_input(workflow, f"{encode}.text", medium)
    guider = nodes[only(nodes, "DualModelGuider")]["inputs"]
    override = nodes[only(nodes, "CFGOverride")]["inputs"]
    assert guider["cfg"] == 7
    assert (override["cfg"], override["start_percent"], override["end_percent"]) == (3, 0.7, 1)
    result = run(workflow, template_root, tmp_path)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    # the schedule the template computed: its size (ResolutionSelector) and Default preset
    scheduler = nodes[only(nodes, "Ideogram4Scheduler")]["inputs"]
    width, height, mu, std = (
        result.values[scheduler[name][0]][scheduler[name][1]]
        for name in ("width", "height", "mu", "std")
    )
    assert (mu, std) == (0.0, 1.75)
    levels = result.values[only(nodes, "Ideogram4Scheduler")]["sigmas"]
    assert float(levels[STEPS - 1]) <= 0.3 < float(levels[STEPS - 2])  # CFGOverride: last step
    prompt = nodes[encode]["inputs"]["text"]
    seed = int(nodes[only(nodes, "RandomNoise")]["inputs"]["noise_seed"])

    pipe = ideogram4_models.pipe
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=prompt,
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            guidance_schedule=[7.0] * (STEPS - 1) + [3.0],
            # the pipeline's mean follows the image's size, the scheduler's its inputs
            mu=mu + 0.5 * math.log(width * height / SIZE**2),
            std=std,
            max_sequence_length=len(prompt) + 64,  # byte-level tiny tokenizer
            latents=ideogram4_family.noise_tokens(seed),
            output_type="np",
        ).images
    )
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


@pytest.mark.slow
def test_ideogram4_int8_template_without_comfy_kitchen_names_files_and_extra(
    template_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quantized_files.without_comfy_kitchen(monkeypatch)
    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    result = run(prepared("image_ideogram4_t2i_int8"), template_root, tmp_path)
    assert not result.ok
    failures = [f for f in result.failures if f.node_type == "DiffusionModelLoader"]
    assert failures
    for failure in failures:
        assert "_int8_convrot.safetensors" in failure.message
        assert "int8_tensorwise" in failure.message and "layers.0.attention.qkv" in failure.message
        assert "pip install 'easel[quantized]'" in failure.message
        assert failure.input == "name"  # a clear error on the file input, not a crash
