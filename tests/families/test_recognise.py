"""The registry tells real Stable Diffusion checkpoints apart as diffusers'
`infer_diffusers_model_type` does, and reads the real architectures off their shapes.

The state dicts have the real models' keys and shapes (the real diffusers configs, built on
the meta device, written in the original key layout by the tests' inverse key maps), so no
weights are made or read."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.real_layouts import DIFFUSERS_TYPE, REAL, real_state_dict


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

    for key in (
        "block_out_channels",
        "layers_per_block",
        "down_block_types",
        "up_block_types",
        "cross_attention_dim",
    ):
        assert plain(derived[key]) == plain(real[key]), key
    heads = real["attention_head_dim"]
    assert derived["attention_head_dim"] == (list(heads) if isinstance(heads, tuple) else heads)
    assert derived["in_channels"] == real.get("in_channels", 4)
    assert bool(derived["use_linear_projection"]) == real.get("use_linear_projection", False)
    if "transformer_layers_per_block" in real:
        depth = real["transformer_layers_per_block"]
        expected = depth if isinstance(depth, int) else [0, 2, 10]  # the LDM yaml's [0, 2, 10]
        assert derived["transformer_layers_per_block"] == expected
