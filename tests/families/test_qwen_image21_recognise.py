"""Qwen-Image 2.1's files are told apart from Qwen-Image's (transformer, text encoder, VAE),
sized off their shapes, and what Easel does not support is refused with errors naming the node's
input, not ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.families.test_qwen_image21_parity import split_workflow
from tests.fixtures import qwen_image21_family

qwen21_models = qwen_image21_family.qwen21_models
qwen21_manager = qwen_image21_family.qwen21_manager
run_qwen21 = qwen_image21_family.run_qwen21


def _header(path: Path) -> Any:
    from easel.models.family_files import header

    found = header(path)
    assert found is not None
    return found


def test_the_transformer_is_qwen_image21_and_sized_off_its_shapes(qwen21_models: Any) -> None:
    from easel.models.families import qwen_image, qwen_image21

    state = _header(qwen21_models.root / "models/diffusion_models/qwen_image_2.1.safetensors")
    assert qwen_image.recognise(state) is None
    family, _ = qwen_image21.recognise(state) or (None, None)
    assert family is qwen_image21.QWEN_IMAGE21
    config = qwen_image21.transformer_config(state)
    expected = qwen21_models.pipe.transformer.config
    for name in (
        "in_channels",
        "out_channels",
        "num_layers",
        "attention_head_dim",
        "num_attention_heads",
        "context_in_dim",
        "mlp_ratio",
    ):
        assert config[name] == expected[name], name
    assert list(config["axes_dims_rope"]) == list(expected["axes_dims_rope"])


def test_the_text_encoder_is_qwen3_vl_not_qwen25_vl(qwen21_models: Any) -> None:
    from easel.models import qwen21_loading, qwen_loading

    state = _header(qwen21_models.root / "models/text_encoders/qwen3vl_8b.safetensors")
    assert qwen21_loading.is_qwen3_vl(state)
    assert not qwen_loading.is_qwen25_vl(state)


def test_the_vae_is_the_21_vae_and_its_config_is_read_off_the_file(qwen21_models: Any) -> None:
    from safetensors.torch import load_file

    from easel.models.qwen21_vae import diffusers_keys, is_qwen21_vae, vae_config

    state = load_file(str(qwen21_models.root / "models/vae/qwen_image_2.1_vae.safetensors"))
    assert is_qwen21_vae(state)
    converted = diffusers_keys(state)
    expected = qwen21_models.pipe.vae
    assert set(converted) == set(expected.state_dict())
    for key, value in expected.state_dict().items():
        assert torch.equal(converted[key], value), key
    config = vae_config(converted)
    for name in ("base_dim", "decoder_base_dim", "z_dim", "dim_mult", "num_res_blocks"):
        assert config[name] == expected.config[name], name
    assert config["temperal_downsample"] == list(expected.config.temperal_downsample)


def test_images_without_a_vae_are_context_only(run_qwen21: Any, tmp_path: Path) -> None:
    """Without `vae` the images are seen by the text encoder and stay in the text (ComfyUI's
    keep_vision): no image slot waits for a latent, and the image still changes the result."""
    from PIL import Image as PILImage

    PILImage.new("RGB", (288, 288), (200, 30, 30)).save(tmp_path / "red.png")
    nodes = split_workflow()
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(tmp_path / "red.png")}}
    nodes["enc"]["inputs"]["image_1"] = ["img", "image"]
    result = run_qwen21(nodes, ["enc", "dec"])
    assert result.status == "succeeded", result.failures
    positive = result.values["enc"]["positive"]
    assert not bool(positive["image_pad"].any()) and "reference_latents" not in positive
    plain = run_qwen21(split_workflow(), ["enc", "dec"])
    assert positive["embeds"].shape[1] > plain.values["enc"]["positive"]["embeds"].shape[1]
    assert (result.values["dec"]["image"] - plain.values["dec"]["image"]).abs().max() > 1e-4


def test_lossy_cache_storage_is_refused_naming_dtype(run_qwen21: Any) -> None:
    nodes = split_workflow(cache="auto")
    nodes["cache"]["inputs"]["dtype"] = "int8"
    result = run_qwen21(nodes, ["cache"])
    assert result.status != "succeeded"
    [failure] = result.failures
    assert failure.input == "dtype" and "lossy" in failure.message


def test_integer_quantised_files_are_refused_naming_the_file(
    qwen21_models: Any, run_qwen21: Any
) -> None:
    from safetensors.torch import load_file, save_file

    models = qwen21_models.root / "models" / "diffusion_models"
    state = load_file(str(models / "qwen_image_2.1.safetensors"))
    state = {k: (v.to(torch.int8) if k.endswith("to_q.weight") else v) for k, v in state.items()}
    target = models / "qwen_image_2.1_int8_convrot.safetensors"
    save_file(state, str(target))
    try:
        nodes = split_workflow()
        nodes["unet"]["inputs"]["name"] = target.name
        result = run_qwen21(nodes, ["unet"])
    finally:
        target.unlink()
    assert result.status != "succeeded"
    [failure] = result.failures
    assert failure.input == "name"
    assert target.name in failure.message and "int8" in failure.message
