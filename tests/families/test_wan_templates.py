"""ComfyUI's own ChronoEdit template (`image_chrono_edit_14B` of the
`comfyui-workflow-templates-json` corpus: a subgraph of UNETLoader with fp8 weights, CLIPLoader
type wan, VAELoader, CLIPVisionLoader, CLIPVisionEncode, WanImageToVideo of 5 frames,
ModelSamplingSD3 5, ScaleROPE with scale_t 7, a switch that leaves the distill LoRA off,
KSampler uni_pc / simple at cfg 4, VAEDecode and ImageFromBatch of the last frame) runs end to
end on the tiny Wan models, saved under the file names the template loads, and gives
ChronoEditPipeline's image with its transformer's weights stored in fp8 (diffusers' layerwise
casting, as UNETLoader's fp8_e4m3fn keeps them), stepped by diffusers' UniPC (Easel's uni_pc:
flow prediction, diffusers' default bh2 solver) through ComfyUI's "simple" noise levels (shift 5
of linspace(1, 1/n, n), then 0), from the same noise. Made small: the image and size (32), the
steps (2)."""

from __future__ import annotations

import copy
import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.families.test_wan_parity import TOLERANCE
from tests.families.workflows import as_tensor, only, template
from tests.fixtures import wan_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

wan_models = wan_family.wan_models
SIZE = wan_family.SIZE
STEPS = 2
SHIFT = 5.0
LORA = "chronoedit_distill_lora.safetensors"


def _literal(nodes: dict[str, Any], value: Any) -> Any:
    """A literal input, or the value its constant node (or off switch) gives."""
    while isinstance(value, list):
        node = nodes[value[0]]["inputs"]
        value = node["on_false"] if "on_false" in node else node["value"]
    return value


def _simple_uni_pc(steps: int) -> Any:
    """diffusers' UniPC (flow prediction) stepping through ComfyUI's "simple" levels."""
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(
        num_train_timesteps=1000,
        use_flow_sigmas=True,
        prediction_type="flow_prediction",
        flow_shift=SHIFT,
    )
    original = scheduler.set_timesteps

    def set_timesteps(num_inference_steps: int, device: Any = None, **_: Any) -> None:
        original(device=device, sigmas=np.linspace(1.0, 1.0 / steps, steps))
        plain = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
        levels = (SHIFT * plain / (1 + (SHIFT - 1) * plain)).float()  # no 1e-6 nudge
        scheduler.sigmas = torch.cat([levels, torch.zeros(1)])
        scheduler.timesteps = levels * 1000

    scheduler.set_timesteps = set_timesteps  # type: ignore[method-assign]
    return scheduler


def reference(
    pipe: Any, picture: Path, prompts: dict[str, str], seed: int, cfg: float, length: int
) -> Any:
    from diffusers import ChronoEditPipeline
    from diffusers.pipelines.chronoedit import pipeline_chronoedit
    from PIL import Image

    transformer = copy.deepcopy(pipe.transformer)
    transformer.enable_layerwise_casting(
        storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32
    )
    fp8 = ChronoEditPipeline(**{**pipe.components, "transformer": transformer})
    fp8.scheduler = _simple_uni_pc(STEPS)
    fp8.set_progress_bar_config(disable=True)
    frames = 1 + (length - 1) // 4
    noise = torch.randn(
        (1, 16, frames, SIZE // 8, SIZE // 8), generator=torch.Generator().manual_seed(seed)
    )
    original = pipeline_chronoedit.basic_clean
    pipeline_chronoedit.basic_clean = lambda text: text.strip()  # ComfyUI runs no ftfy
    try:
        with torch.no_grad():
            video = fp8(
                image=Image.open(picture).convert("RGB"),
                prompt=prompts["positive"],
                negative_prompt=prompts["negative"],
                height=SIZE,
                width=SIZE,
                num_inference_steps=STEPS,
                guidance_scale=cfg,
                latents=noise,
                output_type="np",
            ).frames
    finally:
        pipeline_chronoedit.basic_clean = original
    return as_tensor(video[0][-1:])


def test_chrono_edit_template_runs_and_equals_comfyui_on_diffusers_components(
    wan_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image as PILImage
    from safetensors.torch import save_file

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    root = tmp_path / "models"
    for name in wan_family.FILES.values():  # the fixture's files carry the template's names
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wan_models.root / "models" / name, root / name)
    # the distill LoRA the template's switch leaves off: present, so the workflow validates,
    # never read (a Switch runs only the branch it picks)
    (root / "loras").mkdir()
    save_file({"unused": torch.zeros(1)}, str(root / "loras" / LORA))
    monkeypatch.setenv("EASEL_MODELS_DIR", str(root))
    monkeypatch.setenv("EASEL_UMT5_TOKENIZER", str(wan_models.tokenizer_folder))
    generator = torch.Generator().manual_seed(7)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8)
    picture = tmp_path / "input.png"
    PILImage.fromarray(pixels.numpy(), "RGB").save(picture)

    workflow = to_easel(template("image_chrono_edit_14B"))
    nodes = workflow["nodes"]
    i2v, sampler = only(nodes, "WanImageToVideo"), only(nodes, "KSampler")
    set_input(workflow, f"{i2v}.width", SIZE)
    set_input(workflow, f"{i2v}.height", SIZE)
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(picture))
    steps_node = nodes[nodes[sampler]["inputs"]["steps"][0]]["inputs"]["on_false"][0]
    set_input(workflow, f"{steps_node}.value", STEPS)
    manager = ModelManager([root], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out")
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    out = np.asarray(PILImage.open(tmp_path / "out" / saved).convert("RGB"))
    ours = torch.from_numpy(out.copy()).permute(2, 0, 1)[None].float() / 255

    inputs = nodes[sampler]["inputs"]
    assert (inputs["sampler_name"], inputs["scheduler"]) == ("uni_pc", "simple")
    assert nodes[only(nodes, "DiffusionModelLoader")]["inputs"]["weight_dtype"] == "fp8_e4m3fn"
    conditioning = nodes[i2v]["inputs"]
    prompts = {
        side: _literal(nodes, nodes[conditioning[side][0]]["inputs"]["text"])
        for side in ("positive", "negative")
    }
    theirs = reference(
        wan_models.pipe,
        picture,
        prompts,
        seed=int(_literal(nodes, inputs["seed"])),
        cfg=float(_literal(nodes, inputs["cfg"])),
        length=int(conditioning["length"]),
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the saved PNG is 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
