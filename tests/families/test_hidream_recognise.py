"""HiDream-I1 recognised and sized from real-size layouts (built on the meta device, no
weights): the transformer config read off the shapes is HiDream-I1's diffusers config, Llama's
is Llama 3.1 8B's, and no other family claims the file."""

from __future__ import annotations

from typing import Any

import pytest

# HiDream-I1's transformer config (HiDream-ai/HiDream-I1-Full, transformer/config.json)
REAL = {
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 16,
    "num_single_layers": 32,
    "attention_head_dim": 128,
    "num_attention_heads": 20,
    "caption_channels": [4096, 4096],
    "text_emb_dim": 2048,
    "num_routed_experts": 4,
    "num_activated_experts": 2,
    "axes_dims_rope": [64, 32, 32],
    "max_resolution": [128, 128],
    "llama_layers": list(range(32)) + [31] * 16,
}


def shapes(module: Any, prefix: str = "") -> dict[str, Any]:
    from easel.models.family_files import Shape

    return {prefix + k: Shape(tuple(v.shape)) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def real_keys() -> dict[str, Any]:
    import torch
    from diffusers import HiDreamImageTransformer2DModel

    with torch.device("meta"):
        model = HiDreamImageTransformer2DModel(**REAL)
    return shapes(model, "model.diffusion_model.")


def test_the_config_read_off_the_shapes_is_hidream_i1s(real_keys: dict[str, Any]) -> None:
    from easel.models.families import hidream

    assert hidream.transformer_config(real_keys) == REAL


def test_only_hidream_claims_the_file(real_keys: dict[str, Any]) -> None:
    import importlib

    from easel.models import family_files

    claims = [
        name
        for name in family_files.DIFFUSION_MODELS
        if importlib.import_module(name).recognise_diffusion_model(real_keys)
    ]
    assert claims == ["easel.models.hidream_loading"]


@pytest.mark.parametrize(
    "name,family",
    [
        ("hidream_i1_full_fp16.safetensors", "hidream-full"),
        ("hidream_i1_dev_bf16.safetensors", "hidream-dev"),
        ("hidream_i1_fast_fp8.safetensors", "hidream-fast"),
        ("my_finetune.safetensors", "hidream-full"),
    ],
)
def test_the_variant_from_the_name(real_keys: dict[str, Any], name: str, family: str) -> None:
    from easel.models.families import hidream

    found = hidream.recognise(real_keys, name)
    assert found is not None and found[0].name == family


def test_llama_3_1_8b_is_sized_off_its_shapes() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from easel.models.hidream_loading import LLAMA_ROPE, encoder_kind, llama_config

    real = LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_parameters=dict(LLAMA_ROPE),
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(real)
    keys = shapes(model)
    assert encoder_kind(keys) == ("llama", "model.")
    sub = {k.removeprefix("model."): v for k, v in keys.items() if k.startswith("model.")}
    config = llama_config(sub)
    for name in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
    ):
        assert getattr(config, name) == getattr(real, name), name
    assert config.rope_parameters["rope_type"] == "llama3"
