"""SDXL revision (ComfyUI's unCLIPConditioning on SDXL) from a CLIP-G `clip_vision/` file: the
noise augmentation is diffusers' unCLIP noising (StableUnCLIPImg2ImgPipeline) as ComfyUI mixes
it, and ComfyUI's sdxl_revision_text_prompts template runs end to end on the tiny SDXL and gives
StableDiffusionXLPipeline's image with that embedding as the pooled input (CPU fp32, 1e-3)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tests.families.workflows import as_tensor, template
from tests.fixtures import clip_vision_files as files
from tests.fixtures.sd_family import POOLED

TOLERANCE = 1e-3
SIZE = 64
PACKAGE = "comfyui_workflow_templates_json"
TEMPLATE = "sdxl_revision_text_prompts"


def stable_unclip_noising(embeds: Any, level: int, noise: Any) -> Any:
    """diffusers' unCLIP noise augmentation (StableUnCLIPImg2ImgPipeline.noise_image_embeddings)
    with SDXL's identity normaliser; the embedding part of its output (ComfyUI's [:, :1280])."""
    from diffusers import DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )

    pipe = SimpleNamespace(
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embeds.shape[-1]),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
    )
    out = StableUnCLIPImg2ImgPipeline.noise_image_embeddings(pipe, embeds, level, noise=noise)
    return out[:, : embeds.shape[-1]]


def expected_pooled(embeds: list[Any], strength: float, noise_augmentation: float) -> Any:
    """ComfyUI's unclip_adm for SDXL: each image noised and weighted, the sum noised at 0; the
    noise drawn in order from Easel's seeded generator."""
    from easel.models.unclip import NOISE_SEED

    generator = torch.Generator().manual_seed(NOISE_SEED)
    level = round(999 * noise_augmentation)
    parts = [
        stable_unclip_noising(e, level, torch.randn(e.shape, generator=generator)) * strength
        for e in embeds
    ]
    if len(parts) == 1:
        return parts[0]
    merged = sum(parts)
    return stable_unclip_noising(merged, 0, torch.randn(merged.shape, generator=generator))


def test_noise_augmentation_is_unclip_noising_mixed_as_comfyui() -> None:
    from easel.models.unclip import pooled_embedding

    torch.manual_seed(0)
    first, second = torch.randn(1, 16) * 3, torch.randn(1, 16) * 3
    one = pooled_embedding([{"image_embeds": first, "strength": 0.5, "noise_augmentation": 0.3}])
    assert (one - expected_pooled([first], 0.5, 0.3)).abs().max().item() < 1e-6
    # level 299 moves the embedding; level 0 barely (sqrt(1 - abar_0) ~ 0.0064)
    assert (one - 0.5 * first).abs().max().item() > 0.1
    entries = [
        {"image_embeds": e, "strength": 0.75, "noise_augmentation": 0.0} for e in (first, second)
    ]
    two = pooled_embedding(entries)
    assert (two - expected_pooled([first, second], 0.75, 0.0)).abs().max().item() < 1e-6
    assert (two - 0.75 * (first + second)).abs().max().item() < 0.1


@pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)
def test_sdxl_revision_template_runs_and_equals_sdxl_pipeline(
    sd_models: Any, sd_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template (two reference images through CLIPVisionEncode and two chained
    unCLIPConditioning at strength 0.75, a text prompt and a negative), made small: 64 x 64,
    3 steps, and euler / normal in place of its dpmpp_3m_sde_gpu, so that the pipeline's
    EulerDiscreteScheduler is the reference."""
    import numpy as np
    from PIL import Image as PILImage
    from transformers import CLIPImageProcessor

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    built = sd_models("sdxl")
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    shutil.copyfile(built.single_file, models / "checkpoints" / "sd_xl_base_1.0.safetensors")
    vision = files.clip_vision(POOLED)
    files.write(models, "clip_vision", "clip_vision_g.safetensors", files.vision_file(vision))

    workflow = to_easel(template(TEMPLATE))
    nodes = workflow["nodes"]

    def only(kind: str) -> str:
        [found] = [i for i, n in nodes.items() if n["type"] == kind]
        return found

    (tmp_path / "input").mkdir()
    images = files.random_images(2, seed=21)
    loaders = sorted((i for i, n in nodes.items() if n["type"] == "LoadImage"), key=int)
    for loader, image in zip(loaders, images, strict=True):
        image.save(tmp_path / "input" / nodes[loader]["inputs"]["image"])
    sampler = only("KSampler")
    set_input(workflow, f"{only('EmptyLatent')}.width", SIZE)
    set_input(workflow, f"{only('EmptyLatent')}.height", SIZE)
    set_input(workflow, f"{sampler}.steps", 3)
    set_input(workflow, f"{sampler}.sampler_name", "euler")
    set_input(workflow, f"{sampler}.scheduler", "normal")
    roots = [models, sd_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(
        load_plugins(entry_points=False),
        services={"models": manager, "input_dir": tmp_path / "input"},
    )
    result = executor.run(workflow, output_dir=tmp_path / "output")
    assert result.ok, result.failures
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    pixels = np.asarray(PILImage.open(tmp_path / "output" / saved).convert("RGB"))
    ours = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255

    # the reference: transformers' CLIP image processing and tower, the noising above, and
    # the pipeline with that embedding as the positive pooled input (LoadImage 34 feeds the
    # first unCLIPConditioning, 38 the second)
    processor = CLIPImageProcessor(
        size={"shortest_edge": files.IMAGE},
        crop_size={"height": files.IMAGE, "width": files.IMAGE},
    )
    with torch.no_grad():
        embeds = [
            vision(**processor(images=image, return_tensors="pt")).image_embeds for image in images
        ]
    unclip = [n["inputs"] for n in nodes.values() if n["type"] == "unCLIPConditioning"]
    assert {(u["strength"], u["noise_augmentation"]) for u in unclip} == {(0.75, 0)}
    pooled = expected_pooled(embeds, 0.75, 0.0)
    inputs = nodes[sampler]["inputs"]
    positive = nodes[inputs["positive"][0]]
    assert positive["type"] == "unCLIPConditioning"
    text = inputs["positive"][0]
    while nodes[text]["type"] == "unCLIPConditioning":
        text = nodes[text]["inputs"]["conditioning"][0]
    pipe = built.pipe
    pipe.set_progress_bar_config(disable=True)
    prompt_embeds, negative_embeds, text_pooled, negative_pooled = pipe.encode_prompt(
        prompt=nodes[text]["inputs"]["text"],
        negative_prompt=nodes[inputs["negative"][0]]["inputs"]["text"],
        device="cpu",
    )

    def reference(positive_pooled: Any) -> Any:
        return as_tensor(
            pipe(
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_embeds,
                pooled_prompt_embeds=positive_pooled,
                negative_pooled_prompt_embeds=negative_pooled,
                height=SIZE,
                width=SIZE,
                num_inference_steps=3,
                guidance_scale=float(inputs["cfg"]),
                generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
                output_type="np",
            ).images
        )

    theirs = reference(pooled)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 1 / 255
    # the images matter: with the prompt's own pooled embedding the image is another
    assert (reference(text_pooled) - theirs).abs().max().item() > 10 * TOLERANCE
