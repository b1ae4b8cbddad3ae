"""The Flux family in the registry: recognised from Black Forest Labs' key layout (dev vs schnell
by the guidance embedding, with or without `model.diffusion_model.`), its configs read off the
shapes of the released models (meta device: no weights), and ComfyUI's text encoder files told
apart and sized."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from easel.models.families import flux
from easel.models.families.registry import by_name
from tests.fixtures.flux_family import transformer_bfl

# FLUX.1-dev's and -schnell's transformer/config.json (the architecture, not the weights)
RELEASED = {
    "patch_size": 1,
    "in_channels": 64,
    "out_channels": None,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "axes_dims_rope": (16, 56, 56),
}


def _meta_transformer(guidance: bool) -> Any:
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        return FluxTransformer2DModel(**RELEASED, guidance_embeds=guidance)


@pytest.mark.parametrize(
    "guidance,prefix,name",
    [
        (True, "", "flux-dev"),
        (False, "model.diffusion_model.", "flux-schnell"),
        (True, "model.diffusion_model.", "flux-dev"),
        (False, "", "flux-schnell"),
    ],
)
def test_released_layouts_are_recognised_and_sized(guidance: bool, prefix: str, name: str) -> None:
    state = transformer_bfl(_meta_transformer(guidance), prefix)
    found = flux.recognise(state)
    assert found is not None and found[0] is by_name(name)
    config = flux.transformer_config(state)
    expected = {
        **RELEASED,
        "out_channels": 64,
        "guidance_embeds": guidance,
        "axes_dims_rope": list(RELEASED["axes_dims_rope"]),
    }
    assert config == expected


def test_released_width_converts_with_diffusers_own_split() -> None:
    """At Flux.1's width of 3072 diffusers' converter does all of the key mapping, and the
    result is exactly the diffusers module's keys and shapes."""
    from easel.models.flux_loading import convert_transformer

    module = _meta_transformer(True)
    converted = convert_transformer(transformer_bfl(module))
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected


def test_sd_and_other_files_are_not_flux() -> None:
    assert (
        flux.recognise(
            {
                "model.diffusion_model.input_blocks.0.0.weight": torch.empty(
                    320, 4, 3, 3, device="meta"
                )
            }
        )
        is None
    )
    assert flux.prefix_of({}) is None


def test_family_data() -> None:
    dev, schnell = by_name("flux-dev"), by_name("flux-schnell")
    assert dev.prediction_type == schnell.prediction_type == "flow"
    assert (dev.latent.channels, dev.latent.scaling_factor, dev.latent.shift_factor) == (
        16,
        0.3611,
        0.1159,
    )
    assert dev.scheduler_config["use_dynamic_shifting"] is True
    assert schnell.scheduler_config["shift"] == 1.0
    assert [part.key for part in dev.text] == ["l", "t5"]


def test_t5_xxl_config_is_read_off_its_shapes() -> None:
    """A T5-XXL encoder file (ComfyUI's t5xxl_fp16 keys) gives T5 v1.1 XXL's config."""
    from transformers import T5Config, T5EncoderModel

    from easel.models.flux_loading import build_t5, text_encoder_kind

    real = T5Config(
        vocab_size=32128,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
    )
    with torch.device("meta"):
        state = {
            k: v
            for k, v in T5EncoderModel(real).state_dict().items()
            if k != "encoder.embed_tokens.weight"
        }
    assert text_encoder_kind(state) == ("t5", "")
    model = build_t5(state, "", torch.float32)
    got = model.config
    assert (
        got.d_model,
        got.d_kv,
        got.d_ff,
        got.num_layers,
        got.num_heads,
        got.is_gated_act,
        got.vocab_size,
    ) == (4096, 64, 10240, 24, 64, True, 32128)


def test_clip_l_files_are_told_from_t5() -> None:
    from easel.models.flux_loading import text_encoder_kind

    key = "text_model.encoder.layers.0.self_attn.q_proj.weight"
    empty = torch.empty(1, device="meta")
    assert text_encoder_kind({key: empty}) == ("clip_l", "")
    assert text_encoder_kind({"transformer." + key: empty}) == ("clip_l", "transformer.")
    assert text_encoder_kind({"lm_head.weight": empty}) is None
