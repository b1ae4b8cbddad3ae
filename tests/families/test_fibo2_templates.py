"""ComfyUI's own Fibo 2.0 template (the `comfyui-workflow-templates-json` corpus, in the dev
extra): `image_fibo2_edit_turbo_pe` runs end to end on the tiny Fibo 2.0 models, saved under
the file names the template loads (float files: the int8 ConvRot names hold the tiny float
weights), with its prompt enhancer on (TextGenerate on the Qwen3-VL file, reading the image,
its text picked by the template's switch), TextEncodeFibo2 with the image and the VAE, and
KSampler (4 steps, cfg 1, euler / simple): the result is BriaFibo2Pipeline's edit of the same
image for the enhancer's text. The result size is set to 64 x 64 and the enhancer's length to
a few tokens (the template's 3,000 is a real model's caption), its system prompt to its first
line."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_fibo2_parity import TOLERANCE
from tests.families.workflows import as_tensor, only, template
from tests.fixtures import fibo2_family
from tests.fixtures.fibo2_family import FILES, SIZE, noise_latents

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

fibo2_models = fibo2_family.fibo2_models
TEMPLATE_FILES = {
    "diffusion_models/fibo2_edit_turbo_int8_convrot.safetensors": FILES["transformer"],
    "diffusion_models/fibo2_dev_int8_convrot.safetensors": FILES["transformer"],
    "text_encoders/qwen3vl_4b_bf16.safetensors": FILES["text_encoder"],
    "vae/flux2-vae.safetensors": FILES["vae"],
}
ENHANCER = "qwen3vl_8b_int8_convrot.safetensors"
GENERATED_TOKENS = 6


@pytest.fixture(scope="module")
def template_root(fibo2_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("fibo2-templates")
    source = fibo2_models.root
    for name, tiny in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        kind = name.split("/")[0]
        shutil.copyfile(source / "models" / kind / tiny, root / "models" / name)
    shutil.copytree(source / "ComfyUI", root / "ComfyUI")
    # the enhancer's Qwen3-VL: the same encoder with a language-model head, to pick tokens
    state = load_file(str(source / "models" / "text_encoders" / FILES["text_encoder"]))
    embeddings = state["model.embed_tokens.weight"]
    state["lm_head.weight"] = torch.randn(
        embeddings.shape, generator=torch.Generator().manual_seed(3)
    )
    save_file(state, str(root / "models" / "text_encoders" / ENHANCER))
    return root


@pytest.mark.parametrize(
    ("name", "steps", "cfg"),
    [
        ("image_fibo2_edit_turbo_pe", 4, 1),
        pytest.param("image_fibo2_edit_dev_pe", 50, 5, marks=pytest.mark.slow),
    ],
)
def test_edit_template_runs_and_equals_bria_fibo2_pipeline(
    template_root: Path,
    fibo2_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    steps: int,
    cfg: float,
) -> None:
    """Turbo as the template has it; Dev (cfg 5 with Bria's structured negative, encoded as
    given) with its 50 steps cut to 3."""
    import numpy as np
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.models.qwen21_text import processor
    from easel.workflow_edit import set_input

    rng = np.random.default_rng(7)
    picture = PILImage.fromarray(rng.integers(0, 256, (80, 48, 3), dtype=np.uint8), "RGB")
    picture.save(tmp_path / "portrait.png")
    roots = [template_root / "models", template_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template(name))
    nodes = workflow["nodes"]
    load, sampler = only(nodes, "LoadImage"), only(nodes, "KSampler")
    encode, generate = only(nodes, "TextEncodeFibo2"), only(nodes, "TextGenerate")
    inputs = nodes[encode]["inputs"]
    assert inputs["image_1"][0] == load and inputs["width"] == 0 and inputs["height"] == 0
    k = nodes[sampler]["inputs"]
    assert (k["steps"], k["cfg"], k["sampler_name"], k["scheduler"]) == (
        steps,
        cfg,
        "euler",
        "simple",
    )
    run_steps = min(steps, 4) if cfg == 1 else 3
    set_input(workflow, f"{sampler}.steps", run_steps)
    set_input(workflow, f"{load}.image", str(tmp_path / "portrait.png"))
    set_input(workflow, f"{encode}.width", SIZE)
    set_input(workflow, f"{encode}.height", SIZE)
    set_input(workflow, f"{generate}.max_length", GENERATED_TOKENS)
    # the enhancer's system prompt (Bria's rewrite spec) cut to its first line: the tiny
    # byte-level tokenizer makes the whole of it thousands of tokens
    system = nodes[generate]["inputs"]["system_prompt"][0]
    first_line = nodes[system]["inputs"]["value"].splitlines()[0]
    set_input(workflow, f"{system}.value", first_line)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out", keep_values=True)
    assert result.ok, result.failures
    decode = only(nodes, "VAEDecode")
    ours = result.values[decode]["image"]
    prompt = result.values[generate]["generated_text"]
    assert prompt  # the enhancer's text went to the encoder (the switch is on)

    pipe = fibo2_models.pipe
    pipe.set_progress_bar_config(disable=True)
    pipe.processor = processor(fibo2_models.pipe.processor.tokenizer)
    try:
        theirs = pipe(
            prompt=prompt,
            image=[picture],
            height=SIZE,
            width=SIZE,
            negative_prompt=inputs["negative_prompt"] or None,
            num_inference_steps=run_steps,
            guidance_scale=float(cfg),
            latents=noise_latents(int(k["seed"])),
            output_type="np",
        ).images
    finally:
        pipe.processor = fibo2_family.TextOnlyProcessor(pipe.processor.tokenizer)
    diff = (ours - as_tensor(theirs)).abs().max().item()
    print(f"Fibo 2.0 {name}: max abs pixel difference {diff:.2e}")
    assert float(ours.std()) > 0.01
    assert diff <= TOLERANCE
