"""ComfyUI's two OmniGen2 templates run end to end on the tiny OmniGen2 in ComfyUI's file layout
(UNETLoader omnigen2_fp16, CLIPLoader type omnigen2 with qwen_2.5_vl_fp16, VAELoader ae; euler,
simple schedule, DualCFGGuider 5 / 2 "regular"; the edit template's image through
ImageScaleToTotalPixels, VAEEncode and ReferenceLatent on the positive and on the negative that
the image guidance scale compares with the plain negative).

No library has an OmniGen2 pipeline to compare with, so each run is compared with a loop
written here from the model's definition over the same modules in memory: the prompts in
OmniGen2's chat template through Qwen2.5-VL (last hidden state), the Flux VAE's latents
((z - shift) * scale), ComfyUI's flow sigmas at shift 2.6 for the "simple" schedule, Euler
steps on the velocity -transformer(x, 1 - sigma, ...), and DualCFGGuider's "regular"
combination neg + 2 (cond2 - neg) + 5 (cond1 - cond2). Sizes and steps are made small."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import only, run_for_image, stage_template_files, template
from tests.fixtures import omnigen2_family

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("comfyui_workflow_templates_json") is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

omnigen2_models = omnigen2_family.omnigen2_models
TOLERANCE = 1e-3
STEPS = 2
SIZE = 64
EDIT_SIZE = 96  # ImageScaleToTotalPixels at its smallest (0.01 MP) in steps of 16: unchanged
TEMPLATE_FILES = {
    f"{kind}/{name}": f"{kind}/{name}" for kind, name in omnigen2_family.FILES.items()
}
SHIFT = 2.6
SYSTEM = (
    "You are a helpful assistant that generates high-quality images based on user instructions."
)


def encode(built: Any, prompt: str) -> Any:
    """OmniGen2's caption: its chat template through Qwen2.5-VL, the last hidden state."""
    text = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
    ids = torch.tensor([built.tokenizer(text).input_ids])
    with torch.no_grad():
        out = built.text_encoder(input_ids=ids, output_hidden_states=True)
    return out.hidden_states[-1]


def flow_sigmas(steps: int, shift: float = SHIFT) -> list[float]:
    """ComfyUI's "simple" schedule over ModelSamplingDiscreteFlow's 1000 sigmas (shift 2.6,
    OmniGen2's, unless told)."""
    t = torch.arange(1, 1001, dtype=torch.float32) / 1000
    table = shift * t / (1 + (shift - 1) * t)
    stride = len(table) / steps
    return [float(table[-(1 + int(i * stride))]) for i in range(steps)] + [0.0]


def reference(
    built: Any,
    prompts: dict[str, str],
    seed: int,
    latent_size: tuple[int, int],
    picture: Any = None,
) -> Any:
    """The image OmniGen2 makes, by the loop written out from its definition."""
    vae, model = built.vae, built.transformer
    scale, shift = vae.config.scaling_factor, vae.config.shift_factor
    positive, negative = encode(built, prompts["positive"]), encode(built, prompts["negative"])
    refs: list[Any] = []
    if picture is not None:
        with torch.no_grad():
            z = vae.encode(picture * 2 - 1).latent_dist.mode()
        refs = [(z - shift) * scale]
    generator = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn((1, 16, *latent_size), generator=generator)
    sigmas = flow_sigmas(STEPS)
    for sigma, after in itertools.pairwise(sigmas):
        t = torch.tensor([1 - sigma])
        with torch.no_grad():
            cond1 = -model(x, t, positive, refs)
            cond2 = -model(x, t, negative, refs)
            neg = -model(x, t, negative, [])
        velocity = neg + 2 * (cond2 - neg) + 5 * (cond1 - cond2)
        x = x + (after - sigma) * velocity
    with torch.no_grad():
        image = vae.decode(x / scale + shift).sample
    return ((image + 1) / 2).clamp(0, 1)


def text_of(nodes: dict[str, Any], guider: str, side: str) -> str:
    """The prompt reaching DualCFGGuider's `side` (through ReferenceLatent, if any)."""
    node = nodes[nodes[guider]["inputs"][side][0]]
    while node["type"] == "ReferenceLatent":
        node = nodes[node["inputs"]["conditioning"][0]]
    assert node["type"] == "TextEncode"
    return str(node["inputs"]["text"])


def check_guider(nodes: dict[str, Any]) -> tuple[str, int]:
    guider = only(nodes, "DualCFGGuider")
    inputs = nodes[guider]["inputs"]
    assert (inputs["cfg_conds"], inputs["cfg_cond2_negative"], inputs["style"]) == (5, 2, "regular")
    assert nodes[only(nodes, "KSamplerSelect")]["inputs"]["sampler_name"] == "euler"
    assert nodes[only(nodes, "BasicScheduler")]["inputs"]["scheduler"] == "simple"
    return guider, int(nodes[only(nodes, "RandomNoise")]["inputs"]["noise_seed"])


@pytest.mark.slow  # the edit template runs by default: it covers the references too
def test_omnigen2_t2i_template_runs_and_equals_the_written_out_loop(
    omnigen2_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    roots = stage_template_files(
        omnigen2_models.root, TEMPLATE_FILES, tmp_path / "root", monkeypatch
    )
    workflow = to_easel(template("image_omnigen2_t2i"))  # its nodes inside a subgraph
    nodes = workflow["nodes"]
    guider, seed = check_guider(nodes)
    latent = only(nodes, "EmptyLatent")
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{only(nodes, 'BasicScheduler')}.steps", STEPS)
    ours = run_for_image(workflow, roots, tmp_path / "out")

    prompts = {
        "positive": text_of(nodes, guider, "cond1"),
        "negative": text_of(nodes, guider, "negative"),
    }
    assert text_of(nodes, guider, "cond2") == prompts["negative"]
    theirs = reference(omnigen2_models, prompts, seed, (SIZE // 8, SIZE // 8))
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: half a step of rounding on top of the tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


def test_omnigen2_image_edit_template_runs_and_equals_the_written_out_loop(
    omnigen2_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    roots = stage_template_files(
        omnigen2_models.root, TEMPLATE_FILES, tmp_path / "root", monkeypatch
    )
    generator = torch.Generator().manual_seed(11)
    pixels = (torch.rand(EDIT_SIZE, EDIT_SIZE, 3, generator=generator) * 255).to(torch.uint8)
    PILImage.fromarray(pixels.numpy(), "RGB").save(tmp_path / "input.png")

    workflow = to_easel(template("image_omnigen2_image_edit"))
    nodes = workflow["nodes"]
    guider, seed = check_guider(nodes)
    assert [nodes[nodes[guider]["inputs"][side][0]]["type"] for side in ("cond1", "cond2")] == [
        "ReferenceLatent",
        "ReferenceLatent",
    ]
    scale = only(nodes, "ScaleToTotalPixels")
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    set_input(workflow, f"{scale}.megapixels", 0.01)
    set_input(workflow, f"{scale}.resolution_steps", 16)
    set_input(workflow, f"{only(nodes, 'BasicScheduler')}.steps", STEPS)
    ours = run_for_image(workflow, roots, tmp_path / "out")

    prompts = {
        "positive": text_of(nodes, guider, "cond1"),
        "negative": text_of(nodes, guider, "negative"),
    }
    assert text_of(nodes, guider, "cond2") == prompts["negative"]
    picture = pixels.permute(2, 0, 1)[None].float() / 255
    latent = (EDIT_SIZE // 8, EDIT_SIZE // 8)
    theirs = reference(omnigen2_models, prompts, seed, latent, picture)
    assert ours.shape == theirs.shape == (1, 3, EDIT_SIZE, EDIT_SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
    # the reference image matters: without it the loop gives another image
    unreferenced = reference(omnigen2_models, prompts, seed, latent)
    assert (unreferenced - theirs).abs().max().item() > 0.01
