"""ComfyUI's own Chroma template (image_chroma_text_to_image from the
`comfyui-workflow-templates-json` corpus, in the dev extra) runs end to end on the tiny Chroma
model, saved under the file names the template loads: CLIPLoader type chroma, T5TokenizerOptions,
ModelSamplingAuraFlow, and ComfyUI's custom sampling (RandomNoise, KSamplerSelect,
BasicScheduler, CFGGuider, SamplerCustomAdvanced) with its negative prompt; size and steps made
small, and gives ChromaPipeline's image for the same sigmas, prompts and seed."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_chroma_parity import TOLERANCE
from tests.families.workflows import as_tensor, template
from tests.fixtures import chroma_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

chroma_root = chroma_family.chroma_root
chroma_models = chroma_family.chroma_models
SIZE = 64
TEMPLATE_FILES = {
    "diffusion_models/Chroma1-HD-fp8mixed.safetensors": "model",
    "text_encoders/t5xxl_fp8_e4m3fn_scaled.safetensors": "t5",
    "vae/ae.safetensors": "vae",
}


def test_chroma_template_runs(
    chroma_models: Any,
    chroma_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    _, files = chroma_models
    root = tmp_path / "root"
    for name, source in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[source], root / "models" / name)
    shutil.copytree(chroma_root / "ComfyUI", root / "ComfyUI")
    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("image_chroma_text_to_image"))
    nodes = workflow["nodes"]
    types = {n["type"] for n in nodes.values()}
    assert {"TextEncoderLoader", "T5TokenizerOptions", "DiffusionModelLoader"} <= types
    [latent] = [i for i, n in nodes.items() if n["type"] == "EmptyLatent"]
    [scheduler] = [i for i, n in nodes.items() if "steps" in n["inputs"]]
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{scheduler}.steps", 2)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "output", keep_values=True)
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / "output" / saved).convert("RGB"))
    assert pixels.shape == (SIZE, SIZE, 3)
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
    assert float(ours.std()) > 0.01

    # ChromaPipeline with the template's sigmas (shift 1), prompts each padded as
    # T5TokenizerOptions(0, 0) pads them, CFG 3.5 with the negative, the template's seed
    pipe, _ = chroma_models
    [guider] = [n["inputs"] for n in nodes.values() if n["type"] == "CFGGuider"]
    [noise] = [n["inputs"] for n in nodes.values() if n["type"] == "RandomNoise"]
    texts = [nodes[guider[side][0]]["inputs"]["text"] for side in ("positive", "negative")]
    sigmas = result.values[scheduler]["sigmas"]
    embeds = [
        pipe._get_t5_prompt_embeds(text, max_sequence_length=len(pipe.tokenizer(text).input_ids))
        for text in texts
    ]
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt_embeds=embeds[0][0],
            prompt_attention_mask=embeds[0][1],
            negative_prompt_embeds=embeds[1][0],
            negative_prompt_attention_mask=embeds[1][1],
            guidance_scale=float(guider["cfg"]),
            sigmas=[float(s) for s in sigmas[:-1]],
            num_inference_steps=len(sigmas) - 1,
            height=SIZE,
            width=SIZE,
            generator=torch.Generator("cpu").manual_seed(int(noise["noise_seed"])),
            output_type="np",
        ).images
    )
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255
