"""Qwen-Image's files are recognised by their keys and sized off their shapes at the real models'
sizes (safetensors headers only: nothing is allocated), and other families' files are not taken
for them."""

from __future__ import annotations

from typing import Any

from easel.models.families import qwen_image
from easel.models.family_files import Shape
from easel.models.qwen_loading import is_qwen25_vl, recognise_diffusion_model, text_config


def qwen_image_header(prefix: str = "", layers: int = 60) -> dict[str, Shape]:
    """The transformer of Qwen-Image (20B) as its file's header gives it."""
    header = {
        f"{prefix}img_in.weight": Shape((3072, 64)),
        f"{prefix}txt_in.weight": Shape((3072, 3584)),
        f"{prefix}txt_norm.weight": Shape((3584,)),
        f"{prefix}proj_out.weight": Shape((64, 3072)),
    }
    for i in range(layers):
        header[f"{prefix}transformer_blocks.{i}.attn.norm_q.weight"] = Shape((128,))
        header[f"{prefix}transformer_blocks.{i}.img_mod.1.weight"] = Shape((18432, 3072))
    return header


def test_the_real_transformer_is_sized_off_its_shapes() -> None:
    for prefix in ("", "model.diffusion_model."):
        header = qwen_image_header(prefix)
        assert recognise_diffusion_model(header)
        config = qwen_image.transformer_config(header)
        assert config["num_layers"] == 60
        assert config["num_attention_heads"] == 24
        assert config["attention_head_dim"] == 128
        assert config["joint_attention_dim"] == 3584
        assert (config["in_channels"], config["out_channels"]) == (64, 16)
        assert config["zero_cond_t"] is False


def test_edit_2511_marker() -> None:
    header = qwen_image_header()
    header[qwen_image.ZERO_COND_MARKER] = Shape((0,))
    assert qwen_image.transformer_config(header)["zero_cond_t"] is True


def test_other_families_are_not_qwen_image() -> None:
    flux = {"double_blocks.0.img_attn.qkv.weight": Shape((9216, 3072))}
    assert not recognise_diffusion_model(flux)
    qwen21 = {"txt_in.text_norm.weight": Shape((3584,))}  # diffusers' Qwen-Image 2.1 key
    assert not recognise_diffusion_model(qwen21)


IDS = {"<|image_pad|>": 151655, "<|video_pad|>": 151656, "<|vision_start|>": 151652}


class _Tokenizer:
    unk_token_id = None

    def convert_tokens_to_ids(self, token: str) -> Any:
        return IDS.get(token, 151653)


def qwen25_vl_header() -> dict[str, Shape]:
    """Qwen2.5-VL-7B in the original keys, as ComfyUI's qwen_2.5_vl_7b file holds it."""
    header = {
        "model.embed_tokens.weight": Shape((152064, 3584)),
        "model.norm.weight": Shape((3584,)),
        "visual.patch_embed.proj.weight": Shape((1280, 3, 2, 14, 14)),
        "visual.merger.mlp.0.weight": Shape((5120, 5120)),
        "visual.merger.mlp.2.weight": Shape((3584, 5120)),
    }
    for i in range(28):
        head = f"model.layers.{i}."
        header[head + "self_attn.q_proj.weight"] = Shape((3584, 3584))
        header[head + "self_attn.q_proj.bias"] = Shape((3584,))
        header[head + "self_attn.k_proj.weight"] = Shape((512, 3584))
        header[head + "mlp.gate_proj.weight"] = Shape((18944, 3584))
    for i in range(32):
        header[f"visual.blocks.{i}.mlp.gate_proj.weight"] = Shape((3420, 1280))
    return header


def test_the_real_text_encoder_is_sized_off_its_shapes() -> None:
    header = qwen25_vl_header()
    assert is_qwen25_vl(header)
    config = text_config(header, _Tokenizer())
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (3584, 28, 152064)
    assert (text.num_attention_heads, text.num_key_value_heads) == (28, 4)
    assert text.intermediate_size == 18944
    assert (vision.hidden_size, vision.depth, vision.num_heads) == (1280, 32, 16)
    assert vision.fullatt_block_indexes == [7, 15, 23, 31]
    assert (vision.spatial_merge_size, vision.out_hidden_size) == (2, 3584)
    assert vision.intermediate_size == 3420
    assert config.image_token_id == 151655


def test_a_t5_file_is_not_qwen25_vl() -> None:
    assert not is_qwen25_vl({"encoder.block.0.layer.0.SelfAttention.q.weight": Shape((4096, 4096))})


def test_missing_tokenizer_names_where_it_looked(tmp_path: Any) -> None:
    import pytest

    from easel.models.errors import ModelError
    from easel.models.qwen_tokenizer import qwen_tokenizer

    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    environ = {"HF_HUB_CACHE": str(tmp_path / "hub"), "EASEL_CONFIG": str(tmp_path / "none.toml")}
    with pytest.raises(ModelError) as caught:
        qwen_tokenizer(checkpoint="qwen_2.5_vl_7b.safetensors", roots=[comfy], environ=environ)
    message = str(caught.value)
    assert "qwen_2.5_vl_7b.safetensors holds no tokenizer" in message
    assert str(comfy / "comfy" / "text_encoders" / "qwen25_tokenizer") in message
    assert "EASEL_QWEN_TOKENIZER" in message and "never downloads" in message


def test_configured_tokenizer_folder_is_used(tmp_path: Any) -> None:
    from easel.models.qwen_tokenizer import find_qwen_tokenizer
    from tests.fixtures.qwen_image_family import write_tokenizer

    folder = write_tokenizer(tmp_path / "tok")
    environ = {"EASEL_QWEN_TOKENIZER": str(folder), "HF_HUB_CACHE": str(tmp_path / "hub")}
    found, _ = find_qwen_tokenizer([tmp_path / "models"], environ)
    assert found == folder
