"""The registry tells real Stable Diffusion checkpoints apart as diffusers'
`infer_diffusers_model_type` does, and reads the real architectures off their shapes.

The state dicts have the real models' keys and shapes (the real diffusers configs, built on
the meta device, written in the original key layout by the tests' inverse key maps), so no
weights are made or read."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.fixtures.sd_family import ldm_state_dict

SD_UNET = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
               down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
               up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
REAL = {
    "sd1": dict(SD_UNET, attention_head_dim=8, cross_attention_dim=768),
    "sd1-inpaint": dict(SD_UNET, attention_head_dim=8, cross_attention_dim=768,
                        in_channels=9),
    "sd2": dict(SD_UNET, attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
                use_linear_projection=True),
    "sdxl": dict(block_out_channels=(320, 640, 1280), layers_per_block=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                   "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
                 cross_attention_dim=2048, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816),
    "sdxl-refiner": dict(block_out_channels=(384, 768, 1536, 1536), layers_per_block=2,
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                           "CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D",
                                         "CrossAttnUpBlock2D", "UpBlock2D"),
                         attention_head_dim=(6, 12, 24, 24), transformer_layers_per_block=4,
                         cross_attention_dim=1280, use_linear_projection=True,
                         addition_embed_type="text_time", addition_time_embed_dim=256,
                         projection_class_embeddings_input_dim=2560),
}
DIFFUSERS_TYPE = {"sd1": "v1", "sd1-inpaint": "inpainting", "sd2": "v2", "sdxl": "xl_base",
                  "sdxl-refiner": "xl_refiner"}
CLIP_L = dict(hidden_size=768, num_hidden_layers=12, intermediate_size=3072,
              num_attention_heads=12, hidden_act="quick_gelu")
CLIP_H = dict(hidden_size=1024, num_hidden_layers=23, intermediate_size=4096,
              num_attention_heads=16, hidden_act="gelu")
CLIP_G = dict(hidden_size=1280, num_hidden_layers=32, intermediate_size=5120,
              num_attention_heads=20, hidden_act="gelu", projection_dim=1280)


def real_state_dict(family: str) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        unet = UNet2DConditionModel(**REAL[family])
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4)
        towers = {"sd1": [CLIPTextModel(CLIPTextConfig(**CLIP_L))],
                  "sd1-inpaint": [CLIPTextModel(CLIPTextConfig(**CLIP_L))],
                  "sd2": [CLIPTextModel(CLIPTextConfig(**CLIP_H))],
                  "sdxl": [CLIPTextModel(CLIPTextConfig(**CLIP_L)),
                           CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G))],
                  "sdxl-refiner": [None, CLIPTextModelWithProjection(
                      CLIPTextConfig(**CLIP_G))]}[family]
    pipe = SimpleNamespace(unet=unet, vae=vae, text_encoder=towers[0],
                           text_encoder_2=towers[1] if len(towers) > 1 else None)
    return ldm_state_dict(family, pipe)


@pytest.mark.parametrize("family", list(REAL))
def test_real_layouts_are_recognised_as_diffusers_does(family: str) -> None:
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    from easel.models.families.recognise import recognise

    state = real_state_dict(family)
    assert infer_diffusers_model_type(state) == DIFFUSERS_TYPE[family]
    found = recognise(state)
    assert found is not None and found.family.name == family


@pytest.mark.parametrize("family", list(REAL))
def test_real_unet_configs_are_read_off_the_shapes(family: str) -> None:
    """The UNet config Easel derives for a real file is the real diffusers config."""
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    from easel.models.families import ldm_shapes
    from easel.models.families.registry import by_name

    state = real_state_dict(family)
    original = ldm_shapes.original_config(state, by_name(family), has_vae=False)
    derived = create_unet_diffusers_config_from_ldm(original, state)
    real = REAL[family]
    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, list | tuple) else value

    for key in ("block_out_channels", "layers_per_block", "down_block_types",
                "up_block_types", "cross_attention_dim"):
        assert plain(derived[key]) == plain(real[key]), key
    heads = real["attention_head_dim"]
    assert derived["attention_head_dim"] == (list(heads) if isinstance(heads, tuple) else heads)
    assert derived["in_channels"] == real.get("in_channels", 4)
    assert bool(derived["use_linear_projection"]) == real.get("use_linear_projection", False)
    if "transformer_layers_per_block" in real:
        depth = real["transformer_layers_per_block"]
        expected = depth if isinstance(depth, int) else [0, 2, 10]  # the LDM yaml's [0, 2, 10]
        assert derived["transformer_layers_per_block"] == expected
