"""ComfyUI's own MiniMax H3 template (the `comfyui-workflow-templates-json` corpus, in the dev
extra): `image_minimax_h3_t2i` runs end to end on the tiny MiniMax H3 models, saved under the
file names the template loads (float files: the int8 ConvRot DiT and AWQ text encoder names
hold the tiny float weights; the DiT is in the pruned form, as the template's: its
`adaln_t_table` samples the timestep MLP's SiLU on 1001 points of t), through its subgraph:
UNETLoader, LoraLoaderModelOnly (the turbo LoRA, switched off as the template has it),
ModelAttentionBackend, CLIPLoader type minimax,
EmptyLatentImage, RandomNoise, BasicGuider, BasicScheduler (simple), SamplerCustomAdvanced,
LTXVSeparateAVLatent and VAEDecode. The size is set to 64 x 64 (the template's comes from
ResolutionSelector), the steps to 3 and the sampler to euler (the template's res_multistep has
no diffusers counterpart; it runs in the slow test): the image is the one diffusers' components
make with the full DiT the pruned one was cut from, for Easel's simple schedule (shift 12):
the levels between the table's points are interpolated, within the parity tolerance.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_minimax_parity import PROMPT, TOLERANCE, reference, run_minimax
from tests.families.test_minimax_parity import workflow as api_workflow
from tests.families.workflows import only, template
from tests.fixtures import minimax_family
from tests.fixtures.minimax_family import FILES, SIZE

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

minimax_models = minimax_family.minimax_models
__all__ = ["run_minimax"]
NAME = "image_minimax_h3_t2i"
TEMPLATE_FILES = {
    "diffusion_models/minimax_h3_fl2va_pruned_int8_convrot.safetensors": FILES["pruned"],
    "text_encoders/qwen3vl_32b_minimax_h3_nvfp4_awq.safetensors": FILES["text_encoder"],
    "vae/minimax_h3_video_vae_fp16.safetensors": FILES["vae"],
    "loras/minimax_h3_fl2v_turbo_8step_v1.0_comfyui_bf16.safetensors": FILES["lora"],
}
STEPS = 3


def simple_sigmas(steps: int, shift: float = 12.0) -> Any:
    """Easel's "simple" schedule of a flow model with `shift` (FluxPipeline's
    linspace(1, 1/n, n), shifted, then 0; ComfyUI's picks the nearest of its 1000 levels
    instead, which at shift 12 differs by up to 4e-4)."""
    t = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
    levels = shift * t / (1 + (shift - 1) * t)
    return torch.tensor([*levels.tolist(), 0.0], dtype=torch.float32)


@pytest.fixture(scope="module")
def template_root(minimax_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("minimax-templates")
    source = minimax_models.root
    for name, tiny in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "models" / name.split("/")[0] / tiny, root / "models" / name)
    shutil.copytree(source / "ComfyUI", root / "ComfyUI")
    return root


def run_template(root: Path, out: Path, sampler: str, monkeypatch: Any) -> tuple[Any, Any]:
    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template(NAME))
    nodes = workflow["nodes"]
    latent, schedule = only(nodes, "EmptyLatent"), only(nodes, "BasicScheduler")
    select, encode = only(nodes, "KSamplerSelect"), only(nodes, "TextEncode")
    assert nodes[only(nodes, "TextEncoderLoader")]["inputs"]["type"] == "minimax"
    assert nodes[select]["inputs"]["sampler_name"] == "res_multistep"
    assert nodes[schedule]["inputs"]["scheduler"] == "simple"
    assert nodes[only(nodes, "Switch")]["inputs"]["switch"] is False  # the turbo LoRA off
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{schedule}.steps", STEPS)
    set_input(workflow, f"{select}.sampler_name", sampler)
    set_input(workflow, f"{encode}.text", PROMPT)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=out, keep_values=True)
    assert result.ok, result.failures
    seed = int(nodes[only(nodes, "RandomNoise")]["inputs"]["noise_seed"])
    return result.values[only(nodes, "VAEDecode")]["image"], seed


def test_t2i_template_runs_and_equals_minimax_h3_components(
    template_root: Path, minimax_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, seed = run_template(template_root, tmp_path / "out", "euler", monkeypatch)
    theirs = reference(minimax_models, simple_sigmas(STEPS), seed=seed)
    diff = (ours - theirs).abs().max().item()
    print(f"MiniMax H3 {NAME}: max abs pixel difference {diff:.2e}")
    assert ours.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert diff <= TOLERANCE


@pytest.mark.slow
def test_t2i_template_runs_with_its_own_sampler(
    template_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """res_multistep, as the template has it (Easel's flow form of ComfyUI's sampler)."""
    ours, _ = run_template(template_root, tmp_path / "out", "res_multistep", monkeypatch)
    assert ours.shape == (1, 3, SIZE, SIZE)
    assert bool(torch.isfinite(ours).all()) and float(ours.std()) > 0.01


@pytest.mark.slow
def test_pruned_dit_samples_as_the_full_one_it_was_cut_from(
    minimax_models: Any, run_minimax: Any
) -> None:
    """ComfyUI's pruned form (`adaln_t_table`: the timestep MLP's SiLU on 1001 points of t,
    read by linear interpolation) against diffusers' components with the full DiT. The video
    levels lie on the table's points (exact there); the audio's (shift 3) fall between them,
    where the table interpolates the curve: the images agree within the parity tolerance (the
    template test does the same at its own levels)."""
    sigmas = torch.tensor([1.0, 0.875, 0.5, 0.0])
    result = run_minimax(api_workflow(FILES["pruned"], sigmas), ["dec"])
    assert result.ok, result.failures
    ours = result.values["dec"]["image"]
    theirs = reference(minimax_models, sigmas)
    diff = (ours - theirs).abs().max().item()
    print(f"MiniMax H3 pruned: max abs pixel difference {diff:.2e}")
    assert diff <= TOLERANCE
