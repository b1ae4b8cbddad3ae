"""Chroma recognised and sized from a real-size layout (Chroma1-HD's config, built on the meta
device in the original keys): the config read off the shapes is Chroma1-HD's, diffusers'
converter maps every key, and neither Flux.1 nor another family claims the file."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.chroma_family import transformer_original

# Chroma1-HD's transformer config (lodestones/Chroma1-HD, transformer/config.json)
REAL = {
    "patch_size": 1,
    "in_channels": 64,
    "out_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "axes_dims_rope": [16, 56, 56],
    "approximator_num_channels": 64,
    "approximator_hidden_dim": 5120,
    "approximator_layers": 5,
}


@pytest.fixture(scope="module")
def real() -> tuple[Any, dict[str, Any]]:
    import torch
    from diffusers import ChromaTransformer2DModel

    with torch.device("meta"):
        model = ChromaTransformer2DModel(**REAL)
    return model, transformer_original(model, "model.diffusion_model.")


def test_the_config_read_off_the_shapes_is_chroma1_hds(real: tuple[Any, dict[str, Any]]) -> None:
    from easel.models.families import chroma

    assert chroma.transformer_config(real[1]) == REAL


def test_only_chroma_claims_the_file(real: tuple[Any, dict[str, Any]]) -> None:
    import importlib

    from easel.models import family_files

    claims = [
        name
        for name in family_files.DIFFUSION_MODELS
        if importlib.import_module(name).recognise_diffusion_model(real[1])
    ]
    assert claims == ["easel.models.chroma_loading"]


def test_every_key_converts(real: tuple[Any, dict[str, Any]]) -> None:
    from easel.models.chroma_loading import convert_transformer

    model, keys = real
    converted = convert_transformer(keys)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
