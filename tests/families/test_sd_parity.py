"""Single-file checkpoints of each Stable Diffusion family, with nothing beside them, give the
matching diffusers pipeline's image (CPU fp32, tiny random weights, max abs pixel diff 1e-3)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of, txt2img

TOLERANCE = 1e-3


def reference(pipe: Any, **kwargs: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    out = pipe(height=SIZE, width=SIZE, generator=torch.Generator("cpu").manual_seed(42),
               output_type="np", **kwargs).images
    return as_tensor(out)


@pytest.mark.parametrize("family", ["sd1", "sd2-v"])
def test_sd_text_to_image(family: str, sd_models: Any, run_sd: Any) -> None:
    built = sd_models(family)
    ours = image_of(run_sd(txt2img(f"{family}.safetensors"), ["dec"]))
    theirs = reference(built.pipe, prompt="a red circle", negative_prompt="blue",
                       num_inference_steps=3, guidance_scale=5.0)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01  # a real image, not a constant
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_sd2_v_is_told_from_the_file(sd_models: Any, sd_manager: Any) -> None:
    sd_models("sd2")
    sd_models("sd2-v")
    eps, _, _ = sd_manager.load_checkpoint("sd2.safetensors")
    v, _, _ = sd_manager.load_checkpoint("sd2-v.safetensors")
    assert (eps.family.name, eps.scheduler_config["prediction_type"]) == ("sd2", "epsilon")
    assert (v.family.name, v.scheduler_config["prediction_type"]) == ("sd2-v", "v_prediction")


def test_sdxl_text_to_image(sd_models: Any, run_sd: Any) -> None:
    built = sd_models("sdxl")
    ours = image_of(run_sd(txt2img("sdxl.safetensors"), ["dec"]))
    theirs = reference(built.pipe, prompt="a red circle", negative_prompt="blue",
                       num_inference_steps=3, guidance_scale=5.0)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_single_file_equals_diffusers_folder(sd_models: Any, sd_root: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The same weights as a diffusers folder and as a single file: identical images."""
    import os

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    built = sd_models("sdxl")
    roots = [sd_root / "diffusers", sd_root / "models", sd_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    images = []
    for name in ("sdxl", "sdxl.safetensors"):
        nodes = txt2img(name)
        result = executor.run({"format": "easel.workflow", "version": 1, "nodes": nodes},
                              targets=["dec"], keep_values=True)
        images.append(image_of(result))
    assert built.folder.is_dir()
    assert torch.equal(images[0], images[1])
