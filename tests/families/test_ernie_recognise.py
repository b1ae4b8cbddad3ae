"""ERNIE-Image recognised and sized from real-size layouts built on the meta device: the
transformer (diffusers' defaults with Ministral-3-3B's text width, as ERNIE-Image's) gives its
config back off the shapes and no other family claims it; CLIPLoader type flux2 tells
Ministral-3-3B (width 3072) from Flux.2's Mistral-Small-3.x (5120) and Qwen3 as ComfyUI does,
and reads Ministral-3-3B's config off its shapes; integer-quantised files are refused naming
the file (a tokenizer stored as bytes is not taken for a weight)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# ErnieImageTransformer2DModel's defaults, its text width Ministral-3-3B's (no text_proj)
REAL = {
    "hidden_size": 3072,
    "num_attention_heads": 24,
    "num_layers": 24,
    "ffn_hidden_size": 8192,
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "text_in_dim": 3072,
    "rope_theta": 256,
    "rope_axes_dim": [32, 48, 48],
    "eps": 1e-6,
    "qk_layernorm": True,
}
MINISTRAL_3_3B = {  # ComfyUI's Ministral3_3BConfig
    "vocab_size": 131072,
    "hidden_size": 3072,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
}


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    import torch
    from diffusers import ErnieImageTransformer2DModel

    with torch.device("meta"):
        model = ErnieImageTransformer2DModel(text_in_dim=REAL["text_in_dim"])
    return {"model.diffusion_model." + k: v for k, v in model.state_dict().items()}


def test_the_config_read_off_the_shapes_is_ernie_images(real: dict[str, Any]) -> None:
    from easel.models.families import ernie

    assert "model.diffusion_model.text_proj.weight" not in real
    assert ernie.transformer_config(real) == REAL


def test_only_ernie_claims_the_file(real: dict[str, Any]) -> None:
    import importlib

    from easel.models import family_files

    claims = [
        name
        for name in family_files.DIFFUSION_MODELS
        if importlib.import_module(name).recognise_diffusion_model(real)
    ]
    assert claims == ["easel.models.ernie_loading"]


def _language_model(width: int, layers: int, q_norm: bool = False) -> dict[str, Any]:
    """A decoder stack's keys and shapes in ComfyUI's layout (`model.`), meta tensors."""
    import torch

    heads, kv, head = 32, 8, 128  # Ministral-3-3B's and Mistral-Small-3.x's attention
    state = {"model.embed_tokens.weight": torch.empty(131072, width, device="meta")}
    for i in range(layers):
        stem = f"model.layers.{i}."
        state[stem + "self_attn.q_proj.weight"] = torch.empty(heads * head, width, device="meta")
        for name in ("k_proj", "v_proj"):
            state[stem + f"self_attn.{name}.weight"] = torch.empty(kv * head, width, device="meta")
        state[stem + "self_attn.o_proj.weight"] = torch.empty(width, heads * head, device="meta")
        for name in ("gate_proj", "up_proj"):
            state[stem + f"mlp.{name}.weight"] = torch.empty(9216, width, device="meta")
        state[stem + "mlp.down_proj.weight"] = torch.empty(width, 9216, device="meta")
        for name in ("input_layernorm", "post_attention_layernorm"):
            state[stem + f"{name}.weight"] = torch.empty(width, device="meta")
        if q_norm:
            state[stem + "self_attn.q_norm.weight"] = torch.empty(head, device="meta")
    state["model.norm.weight"] = torch.empty(width, device="meta")
    return state


def test_ministral_is_told_from_flux2s_encoders_by_its_width() -> None:
    from easel.models.ernie_loading import ministral_prefix

    assert ministral_prefix(_language_model(3072, 2)) == "model."
    assert ministral_prefix(_language_model(5120, 2)) is None  # Mistral-Small-3.x: Flux.2 dev
    assert ministral_prefix(_language_model(3072, 2, q_norm=True)) is None  # a Qwen3


def test_ministral_3_3b_config_read_off_the_shapes() -> None:
    import torch

    from easel.models.ernie_loading import build_language_model

    built = build_language_model(_language_model(3072, 26), "model.", torch.bfloat16)
    assert {k: getattr(built.config, k) for k in MINISTRAL_3_3B} == MINISTRAL_3_3B
    assert built.config.rope_parameters["rope_theta"] == 1e6
    assert built.config.rms_norm_eps == 1e-5


def test_integer_quantised_files_are_refused_naming_them(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from easel.models.ernie_loading import read_weights
    from easel.models.errors import ModelError

    manager: Any = type("Manager", (), {"allow_unsafe_pickle": False})()
    ok = tmp_path / "ministral.safetensors"
    save_file(
        {"model.norm.weight": torch.ones(4), "tekken_model": torch.zeros(8, dtype=torch.uint8)},
        str(ok),
    )
    assert set(read_weights(ok, manager)) == {"model.norm.weight", "tekken_model"}
    bad = tmp_path / "ernie-image-int8.safetensors"
    save_file({"layers.0.mlp.gate_proj.weight": torch.zeros(4, 4, dtype=torch.int8)}, str(bad))
    with pytest.raises(ModelError, match=r"ernie-image-int8\.safetensors holds integer-quant"):
        read_weights(bad, manager)
