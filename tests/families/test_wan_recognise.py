"""The released Wan 2.1 transformers are recognised from their files' keys and shapes alone (a
safetensors header: no tensor is read) and get the configs of their diffusers repositories
(Wan-AI/Wan2.1-I2V-14B-720P-Diffusers, Wan-AI/Wan2.1-T2V-1.3B-Diffusers)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from easel.models.family_files import Shape


def header(dim: int, layers: int, ffn: int, in_channels: int, image: bool) -> dict[str, Any]:
    """The keys and shapes of a ComfyUI Wan 2.1 file that recognition and sizing read."""
    keys = {
        "patch_embedding.weight": (dim, in_channels, 1, 2, 2),
        "text_embedding.0.weight": (dim, 4096),
        "time_embedding.0.weight": (dim, 256),
        "time_projection.1.weight": (dim * 6, dim),
        "head.head.weight": (64, dim),
        "head.modulation": (1, 2, dim),
    }
    for i in range(layers):
        keys[f"blocks.{i}.self_attn.q.weight"] = (dim, dim)
        keys[f"blocks.{i}.ffn.0.weight"] = (ffn, dim)
        keys[f"blocks.{i}.norm3.weight"] = (dim,)
        keys[f"blocks.{i}.modulation"] = (1, 6, dim)
        if image:
            keys[f"blocks.{i}.cross_attn.k_img.weight"] = (dim, dim)
    if image:
        keys["img_emb.proj.0.weight"] = (1280,)
    return {"model.diffusion_model." + k: Shape(v, "F16") for k, v in keys.items()}


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (
            (5120, 40, 13824, 36, True),  # Wan 2.1 I2V 14B, ChronoEdit 14B
            {"num_attention_heads": 40, "in_channels": 36, "ffn_dim": 13824, "num_layers": 40,
             "image_dim": 1280, "added_kv_proj_dim": 5120},
        ),
        (
            (1536, 30, 8960, 16, False),  # Wan 2.1 T2V 1.3B
            {"num_attention_heads": 12, "in_channels": 16, "ffn_dim": 8960, "num_layers": 30,
             "image_dim": None, "added_kv_proj_dim": None},
        ),
    ],
)
def test_released_wan_files_get_their_diffusers_configs(
    shape: tuple[Any, ...], expected: dict[str, Any]
) -> None:
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    from easel.models import family_files, wan_loading
    from easel.models.families import wan

    state = header(*shape)
    first = next(  # the first family in UNETLoader's order to claim the file
        name
        for name in family_files.DIFFUSION_MODELS
        if importlib.import_module(name).recognise_diffusion_model(state)
    )
    assert first == wan_loading.__name__
    prefix, layout = wan.layout_of(state) or ("", "")
    assert (prefix, layout) == ("model.diffusion_model.", "wan")
    converted = convert_wan_transformer_to_diffusers(
        {k[len(prefix) :]: v for k, v in state.items()}
    )
    config = wan.transformer_config(converted)
    common = {
        "patch_size": [1, 2, 2],
        "attention_head_dim": 128,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "rope_max_seq_len": 1024,
        "pos_embed_seq_len": None,
    }
    assert config == {**common, **expected}
