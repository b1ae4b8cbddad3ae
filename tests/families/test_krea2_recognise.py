"""Krea 2 recognised and sized from real-size layouts built on the meta device: the transformer
(Krea2Transformer2DModel's defaults, Krea 2's sizes, in Krea's original keys) gives its config
back off the shapes and no other family claims it; Qwen3-VL-4B's language model in ComfyUI's
keys gives Qwen3-VL-4B's text config; files that are not Krea 2's are refused naming them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.krea2_family import transformer_original

# Krea2Transformer2DModel's defaults (Krea 2's sizes), as its config reads them
REAL = {
    "in_channels": 64,
    "num_layers": 28,
    "attention_head_dim": 128,
    "num_attention_heads": 48,
    "num_key_value_heads": 12,
    "intermediate_size": 16384,
    "timestep_embed_dim": 256,
    "text_hidden_dim": 2560,
    "num_text_layers": 12,
    "text_num_attention_heads": 20,
    "text_num_key_value_heads": 20,
    "text_intermediate_size": 6912,
    "num_layerwise_text_blocks": 2,
    "num_refiner_text_blocks": 2,
    "axes_dims_rope": [32, 48, 48],
    "rope_theta": 1000.0,
    "norm_eps": 1e-5,
}
# Qwen/Qwen3-VL-4B-Instruct's text config
QWEN3VL_4B = {
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
}


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    import torch
    from diffusers import Krea2Transformer2DModel

    with torch.device("meta"):
        model = Krea2Transformer2DModel()
    return transformer_original(model, "model.diffusion_model.")


def test_the_config_read_off_the_shapes_is_krea2s(real: dict[str, Any]) -> None:
    import torch
    from diffusers import Krea2Transformer2DModel

    from easel.models.families import krea2

    assert krea2.transformer_config(real) == REAL
    with torch.device("meta"):  # REAL is the class's defaults
        defaults = Krea2Transformer2DModel().config
    assert {
        k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items() if k in REAL
    } == REAL


def test_only_krea2_claims_the_file(real: dict[str, Any]) -> None:
    import importlib

    from easel.models import family_files

    claims = [
        name
        for name in family_files.DIFFUSION_MODELS
        if importlib.import_module(name).recognise_diffusion_model(real)
    ]
    assert claims == ["easel.models.krea2_loading"]


def test_every_key_converts(real: dict[str, Any]) -> None:
    import torch
    from diffusers import Krea2Transformer2DModel

    from easel.models.krea2_loading import convert_transformer

    config, converted = convert_transformer(real)
    with torch.device("meta"):
        model = Krea2Transformer2DModel(**config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected


def test_qwen3vl_4b_text_config_read_off_comfyuis_file() -> None:
    import torch
    from transformers import Qwen3VLTextConfig, Qwen3VLTextModel

    from easel.models.krea2_loading import build_language_model, text_prefix

    config = Qwen3VLTextConfig(**QWEN3VL_4B)
    with torch.device("meta"):
        model = Qwen3VLTextModel(config)
    state = {"model." + k: v for k, v in model.state_dict().items()}
    state["visual.patch_embed.proj.weight"] = torch.empty(1024, 3, 2, 16, 16, device="meta")
    assert text_prefix(state) == "model."
    built = build_language_model(state, "model.", torch.bfloat16)
    assert {k: getattr(built.config, k) for k in QWEN3VL_4B} == QWEN3VL_4B
    assert built.config.rope_parameters["mrope_section"] == [24, 20, 20]


def _write(path: Path, state: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def test_a_shallow_encoder_and_a_foreign_file_are_refused_naming_them(tmp_path: Path) -> None:
    import torch
    from transformers import Qwen3VLTextConfig, Qwen3VLTextModel

    from easel.models.errors import ModelError
    from easel.models.krea2_loading import build_text_encoder

    config = Qwen3VLTextConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    shallow = {"model." + k: v for k, v in Qwen3VLTextModel(config).state_dict().items()}
    manager: Any = type("Manager", (), {"dtype": torch.float32, "roots": [tmp_path]})()
    with pytest.raises(ModelError, match=r"small\.safetensors: a Qwen3-VL text encoder of 4"):
        build_text_encoder(tmp_path / "small.safetensors", shallow, manager)
    other = {"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(4, 4)}
    with pytest.raises(ModelError, match=r"t5\.safetensors is not a text encoder the krea2 type"):
        build_text_encoder(tmp_path / "t5.safetensors", other, manager)


def test_text_conditioning_is_the_tapped_layers_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TextEncode on a Krea 2 CLIP: [1, T, 12 x width], T the prompt's and the template end's
    tokens (the template's head dropped), equal to the pipeline's tapped states."""
    import torch

    from easel.models.families.krea2 import PROMPT_PREFIX, PROMPT_SUFFIX, TAP_LAYERS
    from easel.models.krea2_loading import krea2_clip
    from easel.models.manager import ModelManager
    from easel.models.text import encode_prompts
    from tests.fixtures import krea2_family, qwen_image_family

    folder = qwen_image_family.write_tokenizer(
        tmp_path / "ComfyUI" / "comfy" / "text_encoders" / "qwen25_tokenizer"
    )
    (tmp_path / "ComfyUI" / "main.py").write_text("")
    tokenizer = qwen_image_family._tokenizer(folder)
    torch.manual_seed(0)
    encoder = krea2_family.text_encoder(tokenizer)
    path = _write(
        tmp_path / "models" / "text_encoders" / "qwen3vl.safetensors",
        krea2_family.text_encoder_file(encoder),
    )
    manager = ModelManager([tmp_path / "models", tmp_path / "ComfyUI"], device="cpu")
    clip = krea2_clip("qwen3vl", [path], manager)
    embeds = encode_prompts(clip, {"qwen3vl": "a cat"}).conditioning["embeds"]
    drop = len(tokenizer(PROMPT_PREFIX).input_ids)
    ids = tokenizer(PROMPT_PREFIX + "a cat").input_ids + tokenizer(PROMPT_SUFFIX).input_ids
    with torch.no_grad():
        states = encoder(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    expected = torch.stack([states[i] for i in TAP_LAYERS], dim=2)[:, drop:]
    assert embeds.shape == (1, len(ids) - drop, 12 * krea2_family.TEXT_WIDTH)
    assert torch.allclose(embeds, expected.flatten(2), atol=1e-5)
