"""LongCat-Image's files are told from Flux.1's (the same double/single blocks, but no
`vector_in`), in either key layout, and a diffusers LongCatImagePipeline folder loads through
CheckpointLoader with the pipeline's image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_longcat_parity import PROMPT, TOLERANCE, reference, split_workflow
from tests.families.workflows import image_of
from tests.fixtures import longcat_family

longcat_models = longcat_family.longcat_models


def test_the_comfyui_file_is_longcat_not_flux(longcat_models: Any) -> None:
    from easel.models import family_files
    from easel.models.families import flux, longcat

    path = longcat_models.root / "models" / longcat_family.FILES["transformer"]
    keys = family_files.header(path)
    assert keys is not None
    found = longcat.recognise(keys)
    assert found is not None and found[0] is longcat.LONGCAT
    loaders = [m for m in family_files.DIFFUSION_MODELS if "longcat" in m or "flux_loading" in m]
    assert loaders.index("easel.models.longcat_loading") < loaders.index(
        "easel.models.flux_loading"
    )
    assert longcat.transformer_config(keys)["joint_attention_dim"] == longcat_family.TEXT_WIDTH
    # a Flux.1 file (vector_in: CLIP-L's pooled input) is not LongCat's
    flux_keys = {**keys, "vector_in.in_layer.weight": family_files.Shape((128, 768))}
    assert longcat.recognise(flux_keys) is None
    assert flux.recognise(flux_keys) is not None


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_either_key_layout_builds_the_pipeline_transformer(
    longcat_models: Any, prefix: str, tmp_path: Path
) -> None:
    """Black Forest Labs' keys (ComfyUI's file) and diffusers' own keys, with or without
    ComfyUI's prefix, give the pipeline's transformer weight for weight."""
    from easel.models.longcat_loading import build_transformer

    model = longcat_models.pipe.transformer
    expected = model.state_dict()
    for state in (
        longcat_family.transformer_file(model, prefix),
        {prefix + k: v for k, v in expected.items()},
    ):
        built = build_transformer(state, torch.float32, tmp_path / "x.safetensors")
        got = built.state_dict()
        assert set(got) == set(expected)
        for key, value in expected.items():
            assert torch.equal(got[key], value), key


def test_a_transformer_missing_blocks_is_a_clear_error(longcat_models: Any, tmp_path: Path) -> None:
    from easel.models.errors import ModelError
    from easel.models.longcat_loading import build_transformer

    state = longcat_family.transformer_file(longcat_models.pipe.transformer)
    del state["final_layer.linear.weight"]
    with pytest.raises(ModelError, match=r"broken\.safetensors"):
        build_transformer(state, torch.float32, tmp_path / "broken.safetensors")


def test_diffusers_folder_gives_the_pipeline_image(
    longcat_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    longcat_models.pipe.save_pretrained(str(tmp_path / "longcat"), safe_serialization=True)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow()
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "longcat"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    del nodes["k"]["inputs"]["negative"]
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    ours = image_of(executor.run(workflow, targets=["dec"], keep_values=True))
    theirs = reference(
        longcat_models.pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=1.0
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert os.path.isdir(tmp_path / "longcat" / "transformer")
