"""ComfyUI's Boogu-Image templates run end to end on the tiny Boogu in ComfyUI's file layout
(UNETLoader, CLIPLoader type boogu with qwen3vl_8b, VAELoader ae).

No library has a Boogu pipeline to compare with, so each run is compared with a loop written
here from the model's definition over the same modules in memory: the prompts in Boogu's chat
template through Qwen3-VL (last hidden state; the edit's image through the vision tower), the
Flux VAE's latents ((z - shift) * scale), ComfyUI's flow sigmas at shift 3.16 for the "simple"
schedule, Euler steps on the velocity -transformer(x, 1 - sigma, ...), and classifier-free
guidance. The templates' samplers (lcm / sgm_uniform; dpmpp_2m) are swapped for euler / simple
(the loop written out), sizes and steps made small.

- image_boogu_image_0_1_turbo_t2i (default run): CLIPTextEncode, ConditioningZeroOut for the
  negative, cfg 1.
- image_boogu_image_0_1_edit (slow: TextEncodeBooguEdit encodes the reference at 1 megapixel,
  as ComfyUI's node does): the image seen by Qwen3-VL at 384 x 384 pixels' worth (positive
  only) and as a reference latent of both conditionings, cfg 3.5.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_omnigen2_templates import flow_sigmas
from tests.families.workflows import only, run_for_image, stage_template_files, template
from tests.fixtures import boogu_family

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("comfyui_workflow_templates_json") is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

boogu_models = boogu_family.boogu_models
TOLERANCE = 1e-3
STEPS = 2
SIZE = 64
SHIFT = 3.16
T2I_SYSTEM = (
    "You are a helpful assistant that generates high-quality images based on user "
    "instructions. The instructions are as follows."
)
DROP_SYSTEM = (
    "Describe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the "
    "image. Generate a new image that meets the user's requirements while maintaining "
    "consistency with the original input where appropriate."
)
VISION = "<|vision_start|><|image_pad|><|vision_end|>"


def staged(built: Any, root: Path, monkeypatch: pytest.MonkeyPatch, model: str) -> list[Any]:
    files = {f"{kind}/{name}": f"{kind}/{name}" for kind, name in boogu_family.FILES.items()}
    files[f"diffusion_models/{model}"] = f"diffusion_models/{model}"
    return stage_template_files(built.root, files, root, monkeypatch)  # type: ignore[no-any-return]


def encode(built: Any, system: str, user: str, images: list[Any] | None = None) -> Any:
    """Boogu's caption: its chat template through Qwen3-VL, the last hidden state."""
    text = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
    if images:
        from easel.models.qwen21_text import processor

        inputs = dict(processor(built.tokenizer)(text=[text], images=images, return_tensors="pt"))
    else:
        inputs = {"input_ids": torch.tensor([built.tokenizer(text).input_ids])}
    with torch.no_grad():
        return built.text_encoder(**inputs, output_hidden_states=True).hidden_states[-1]


def sample(
    built: Any,
    conds: list[tuple[Any, list[Any]]],
    cfg: float,
    seed: int,
    latent_size: tuple[int, int],
) -> Any:
    """Euler steps from the seed's noise on the CFG velocity of (positive, negative) `conds`
    (each a caption and its reference latents), decoded by the Flux VAE."""
    vae, model = built.vae, built.transformer
    generator = torch.Generator("cpu").manual_seed(seed)
    x = torch.randn((1, 16, *latent_size), generator=generator)
    sigmas = flow_sigmas(STEPS, SHIFT)
    for sigma, after in itertools.pairwise(sigmas):
        t = torch.tensor([1 - sigma])
        with torch.no_grad():
            preds = [-model(x, t, caption, refs) for caption, refs in conds]
        velocity = preds[0] if cfg == 1 else preds[1] + cfg * (preds[0] - preds[1])
        x = x + (after - sigma) * velocity
    scale, shift = vae.config.scaling_factor, vae.config.shift_factor
    with torch.no_grad():
        image = vae.decode(x / scale + shift).sample
    return ((image + 1) / 2).clamp(0, 1)


def test_boogu_turbo_t2i_template_runs_and_equals_the_written_out_loop(
    boogu_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    roots = staged(boogu_models, tmp_path / "root", monkeypatch, boogu_family.FILES[
        "diffusion_models"
    ])
    workflow = to_easel(template("image_boogu_image_0_1_turbo_t2i"))  # a subgraph inside
    nodes = workflow["nodes"]
    sampler, latent = only(nodes, "KSampler"), only(nodes, "EmptyLatent")
    inputs = nodes[sampler]["inputs"]
    assert (inputs["sampler_name"], inputs["scheduler"], inputs["cfg"]) == ("lcm", "sgm_uniform", 1)
    assert nodes[inputs["negative"][0]]["type"] == "ConditioningZeroOut"
    set_input(workflow, f"{latent}.width", SIZE)
    set_input(workflow, f"{latent}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", STEPS)
    set_input(workflow, f"{sampler}.sampler_name", "euler")
    set_input(workflow, f"{sampler}.scheduler", "simple")
    ours = run_for_image(workflow, roots, tmp_path / "out")

    prompt = str(nodes[inputs["positive"][0]]["inputs"]["text"])
    caption = encode(boogu_models, T2I_SYSTEM, prompt)
    zeros = torch.zeros_like(caption)
    theirs = sample(
        boogu_models, [(caption, []), (zeros, [])], 1.0, int(inputs["seed"]), (SIZE // 8,) * 2
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    # the template saves an 8-bit PNG: half a step of rounding on top of the tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


@pytest.mark.slow  # the reference latent is encoded at 1 megapixel, as ComfyUI's node does
def test_boogu_edit_template_runs_and_equals_the_written_out_loop(
    boogu_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.nn.functional as F
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.models.qwen_text import to_pil
    from easel.workflow_edit import set_input

    roots = staged(boogu_models, tmp_path / "root", monkeypatch, boogu_family.EDIT_MODEL)
    generator = torch.Generator().manual_seed(13)
    # 120 x 88 stays itself at 0.01 megapixels (EmptyLatent takes multiples of 8); its
    # latent, 15 x 11, is padded to whole patches
    pixels = (torch.rand(88, 120, 3, generator=generator) * 255).to(torch.uint8)
    PILImage.fromarray(pixels.numpy(), "RGB").save(tmp_path / "input.png")

    workflow = to_easel(template("image_boogu_image_0_1_edit"))
    nodes = workflow["nodes"]
    sampler, encoder = only(nodes, "SamplerCustom"), only(nodes, "TextEncodeBooguEdit")
    inputs = nodes[sampler]["inputs"]
    assert nodes[only(nodes, "KSamplerSelect")]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert nodes[only(nodes, "ModelSamplingAuraFlow")]["inputs"]["shift"] == SHIFT
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    set_input(workflow, f"{only(nodes, 'ResizeImageMask')}.megapixels", 0.01)
    set_input(workflow, f"{only(nodes, 'KSamplerSelect')}.sampler_name", "euler")
    set_input(workflow, f"{only(nodes, 'BasicScheduler')}.steps", STEPS)
    ours = run_for_image(workflow, roots, tmp_path / "out")

    picture = pixels.permute(2, 0, 1)[None].float() / 255
    def area(pixels: int, multiple: int) -> Any:  # to about `pixels`, sides on `multiple`
        scale = (pixels / (120 * 88)) ** 0.5
        size = [round(side * scale / multiple) * multiple for side in (88, 120)]
        return F.interpolate(picture, size=size, mode="area")

    seen = to_pil(area(384 * 384, 1))
    big = area(1024 * 1024, 16)
    vae = boogu_models.vae
    with torch.no_grad():
        z = vae.encode(big * 2 - 1).latent_dist.mode()
    refs = [(z - vae.config.shift_factor) * vae.config.scaling_factor]
    prompt = nodes[encoder]["inputs"]["prompt"]
    assert nodes[encoder]["inputs"]["negative_prompt"] == ""
    positive = encode(boogu_models, DROP_SYSTEM, VISION + prompt, seen)
    negative = encode(boogu_models, DROP_SYSTEM, "")
    size = (88 // 8, 120 // 8)
    theirs = sample(
        boogu_models,
        [(positive, refs), (negative, refs)],
        float(inputs["cfg"]),
        int(inputs["noise_seed"]),
        size,
    )
    assert ours.shape == theirs.shape == (1, 3, 88, 120)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255
