"""ComfyUI's NetaYume Lumina template (a Lumina 2 checkpoint holding every part, system prompts
joined to the prompts by StringConcatenate in the workflow and a subgraph, ModelSamplingAuraFlow
4, CFG 4) converts and runs end to end on the tiny Lumina 2 model saved as that all-in-one
file, and gives Lumina2Pipeline's image for the same texts, seed and shift (size and steps made
small; the template's `res_multistep` sampler swapped for `euler`)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_lumina2_parity import TOLERANCE
from tests.families.workflows import as_tensor, template
from tests.fixtures import lumina_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

lumina_root = lumina_family.lumina_root
lumina_models = lumina_family.lumina_models
SIZE = 64
SEPARATOR = " <Prompt Start> "


def text_of(nodes: dict[str, Any], link: Any) -> str:
    """The text a TextEncode's `text` link carries (ConcatenateText of String nodes)."""
    node = nodes[link[0]]
    if node["type"] == "String":
        return str(node["inputs"]["value"])
    assert node["type"] == "ConcatenateText", node["type"]
    parts = [node["inputs"][key] for key in ("a", "b")]
    texts = [text_of(nodes, v) if isinstance(v, list) else str(v) for v in parts]
    return str(node["inputs"].get("delimiter", "")).join(texts)


def test_netayume_lumina_template_runs_and_equals_lumina2_pipeline(
    lumina_models: Any, lumina_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    built = lumina_models["lumina2"]
    root = tmp_path / "root"
    lumina_family.write_checkpoint(built, root, "NetaYumev35_pretrained_all_in_one.safetensors")
    roots = [root / "models"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    monkeypatch.setenv("EASEL_GEMMA_TOKENIZER", str(lumina_root / "tokenizers" / "gemma"))
    workflow = to_easel(template("image_netayume_lumina_t2i"))
    nodes = workflow["nodes"]
    [latent] = [i for i, n in nodes.items() if n["type"] == "EmptyLatent"]
    [sampler] = [i for i, n in nodes.items() if n["type"] == "KSampler"]
    [shift] = [n for n in nodes.values() if n["type"] == "ModelSamplingAuraFlow"]
    inputs = nodes[sampler]["inputs"]
    assert (inputs["sampler_name"], inputs["cfg"]) == ("res_multistep", 4)
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", 2)
    set_input(workflow, f"{sampler}.sampler_name", "euler")
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out")
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / "out" / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    positive = text_of(nodes, nodes[inputs["positive"][0]]["inputs"]["text"])
    negative = text_of(nodes, nodes[inputs["negative"][0]]["inputs"]["text"])
    system, prompt = positive.split(SEPARATOR, 1)  # the pipeline puts them back together
    pipe = built.pipe
    shifted = Lumina2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(
            shift=float(shift["inputs"]["shift"]), use_dynamic_shifting=False
        ),
        **{k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "transformer")},
    )
    shifted.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        shifted(
            prompt=prompt,
            system_prompt=system,
            negative_prompt=negative,
            guidance_scale=4.0,
            cfg_normalization=False,
            height=SIZE,
            width=SIZE,
            num_inference_steps=2,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
        ).images
    )
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: one step of 1/255 on top of the parity bound
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255
