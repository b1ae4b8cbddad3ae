"""ComfyUI's own Mage-Flow templates (the `comfyui-workflow-templates-json` corpus, in the dev
extra) run end to end on the tiny Mage-Flow models, saved under the file names the templates
load (float files: the int8 ConvRot names hold the tiny float weights).

No library has Mage-Flow, so there is no pipeline to compare with. The result is checked
against a direct computation from the same tiny modules (not through Easel's loaders, nodes or
sampler): the prompt written out in Mage's chat template and tokenised by hand, the template
prefix cut off by its own token count, Qwen3-VL's normed last hidden state, the noise of the
KSampler's seed, Mage's sigmas (linspace(1, 1/n, n) shifted by 6, then 0), Euler steps with the
transformer's velocity (classifier-free guidance for cfg > 1), and the Mage-VAE's decode.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import only, template
from tests.fixtures import mage_family
from tests.fixtures.mage_family import FILES

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)
TOLERANCE = 1e-3
SHIFT = 6.0
SIZE = 64
PROMPT = "a lighthouse on a cliff at dusk"
T2I_SYSTEM = (
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial "
    "relationships of the objects and background:"
)
EDIT_SYSTEM = (
    "Describe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the "
    "image. Generate a new image that meets the user's requirements while maintaining "
    "consistency with the original input where appropriate."
)

mage_models = mage_family.mage_models
TEMPLATE_FILES = {
    "diffusion_models/mage_flow_int8_convrot.safetensors": FILES["transformer"],
    "diffusion_models/mage_flow_turbo_int8_convrot.safetensors": FILES["transformer"],
    "diffusion_models/mage_flow_edit_int8_convrot.safetensors": FILES["transformer"],
    "diffusion_models/mage_flow_edit_turbo_int8_convrot.safetensors": FILES["transformer"],
    "text_encoders/qwen3vl_4b_bf16.safetensors": FILES["text_encoder"],
    "vae/mage_flow_vae_bf16.safetensors": FILES["vae"],
}


@pytest.fixture(scope="module")
def template_root(mage_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mage-templates")
    for name, tiny in TEMPLATE_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        kind = name.split("/")[0]
        shutil.copyfile(mage_models.root / "models" / kind / tiny, root / "models" / name)
    shutil.copytree(mage_models.root / "ComfyUI", root / "ComfyUI")
    return root


def run(workflow: dict[str, Any], root: Path, out: Path, monkeypatch: Any) -> Any:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=out, keep_values=True)
    assert result.ok, result.failures
    return result


# -- the direct computation ---------------------------------------------------------------------
def embeds(models: Any, system: str, user: str, image: Any = None) -> torch.Tensor:
    """Qwen3-VL's normed last hidden state of the user turn onwards."""
    from easel.models.qwen21_text import processor
    from easel.models.qwen_text import to_pil

    tokenizer = models.tokenizer
    head = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"
    text = f"{head}{user}<|im_end|>\n<|im_start|>assistant\n"
    if image is None:
        inputs = dict(tokenizer([text], add_special_tokens=False, return_tensors="pt"))
    else:
        inputs = dict(processor(tokenizer)(text=[text], images=to_pil(image), return_tensors="pt"))
    drop = len(tokenizer(head, add_special_tokens=False).input_ids)
    with torch.no_grad():
        hidden = models.text_encoder(**inputs).last_hidden_state
    return hidden[:, drop:]


def sigmas(steps: int) -> list[float]:
    levels = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
    shifted = SHIFT * levels / (1 + (SHIFT - 1) * levels)
    return [*shifted.tolist(), 0.0]


def direct(
    models: Any,
    positive: torch.Tensor,
    negative: torch.Tensor,
    size: tuple[int, int],
    seed: int,
    steps: int,
    cfg: float,
    references: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    width, height = size
    generator = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn((1, 128, height // 16, width // 16), generator=generator)
    levels = sigmas(steps)
    with torch.no_grad():
        for now, after in itertools.pairwise(levels):
            sigma = torch.tensor([now], dtype=torch.float32)
            v = models.transformer(x, positive, sigma, references or [])
            if cfg != 1:
                v_neg = models.transformer(x, negative, sigma, references or [])
                v = v_neg + cfg * (v - v_neg)
            x = x + (after - now) * v
        image = models.vae.decode(x, return_dict=False)[0]
    return (image / 2 + 0.5).clamp(0, 1)


# -- the templates ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "steps", "cfg"),
    [
        ("image_mage_flow_turbo_t2i_int8", 4, 1),
        pytest.param("image_mage_flow_t2i_int8", 30, 5, marks=pytest.mark.slow),
    ],
)
def test_text_to_image_template_runs_and_equals_the_direct_computation(
    template_root: Path,
    mage_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    steps: int,
    cfg: float,
) -> None:
    """Turbo as the template has it; the base model's 30 steps cut to 2."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    workflow = to_easel(template(name))
    nodes = workflow["nodes"]
    encode, sampler = only(nodes, "TextEncodeMageFlowEdit"), only(nodes, "KSampler")
    k = nodes[sampler]["inputs"]
    assert (k["steps"], k["cfg"], k["sampler_name"], k["scheduler"]) == (
        steps,
        cfg,
        "euler",
        "simple",
    )
    loader = nodes[only(nodes, "TextEncoderLoader")]["inputs"]
    assert loader["type"] == "mage"
    run_steps = steps if cfg == 1 else 2
    set_input(workflow, f"{sampler}.steps", run_steps)
    for key, value in (("prompt", PROMPT), ("negative_prompt", ""), ("width", SIZE)):
        set_input(workflow, f"{encode}.{key}", value)
    set_input(workflow, f"{encode}.height", SIZE)
    result = run(workflow, template_root, tmp_path / "out", monkeypatch)
    ours = result.values[only(nodes, "VAEDecode")]["image"]

    positive = embeds(mage_models, T2I_SYSTEM, PROMPT)
    negative = embeds(mage_models, T2I_SYSTEM, " ")
    theirs = direct(mage_models, positive, negative, (SIZE, SIZE), int(k["seed"]), run_steps, cfg)
    diff = (ours - theirs).abs().max().item()
    print(f"Mage-Flow {name}: max abs pixel difference {diff:.2e}")
    assert ours.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert diff <= TOLERANCE


@pytest.mark.parametrize(
    ("name", "steps", "cfg"),
    [
        ("image_mage_flow_edit_turbo_int8", 4, 1),
        pytest.param("image_mage_flow_edit_int8", 30, 5, marks=pytest.mark.slow),
    ],
)
def test_edit_template_runs_and_equals_the_direct_computation(
    template_root: Path,
    mage_models: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    steps: int,
    cfg: float,
) -> None:
    """The image is scaled to its own size (megapixels set to 128 x 96 pixels) and the result
    matches it (the template's switches); Qwen3-VL sees it and its latent is the reference."""
    import numpy as np
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    rng = np.random.default_rng(11)
    picture = PILImage.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), "RGB")
    picture.save(tmp_path / "input.png")
    workflow = to_easel(template(name))
    nodes = workflow["nodes"]
    encode, sampler = only(nodes, "TextEncodeMageFlowEdit"), only(nodes, "KSampler")
    k = nodes[sampler]["inputs"]
    assert (k["steps"], k["cfg"]) == (steps, cfg)
    run_steps = steps if cfg == 1 else 2
    set_input(workflow, f"{sampler}.steps", run_steps)
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    set_input(workflow, f"{only(nodes, 'ScaleToTotalPixels')}.megapixels", 128 * 96 / 1024**2)
    set_input(workflow, f"{encode}.prompt", PROMPT)
    result = run(workflow, template_root, tmp_path / "out", monkeypatch)
    ours = result.values[only(nodes, "VAEDecode")]["image"]
    source, output = nodes[encode]["inputs"]["image_1"]
    image = result.values[source][output][:1, :3].float()
    assert image.shape[-2:] == (96, 128)

    user = "Image 1: <|vision_start|><|image_pad|><|vision_end|>"
    positive = embeds(mage_models, EDIT_SYSTEM, user + PROMPT, image)
    negative = embeds(mage_models, EDIT_SYSTEM, user + " ", image)
    with torch.no_grad():
        reference = mage_models.vae.encode(image * 2 - 1).latents
    theirs = direct(
        mage_models, positive, negative, (128, 96), int(k["seed"]), run_steps, cfg, [reference]
    )
    diff = (ours - theirs).abs().max().item()
    print(f"Mage-Flow {name}: max abs pixel difference {diff:.2e}")
    assert ours.shape == (1, 3, 96, 128)
    assert float(ours.std()) > 0.01
    assert diff <= TOLERANCE
