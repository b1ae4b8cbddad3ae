"""Flux.2 files are told apart from Flux.1's and sized off their shapes; bad inputs get errors
that say what Easel reads and where it looked."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures import flux2_family

# Variants of the family's behaviour (samplers, layouts, edge cases): run with --slow.
pytestmark = pytest.mark.slow

flux2_root = flux2_family.flux2_root
flux2_models = flux2_family.flux2_models
flux2_manager = flux2_family.flux2_manager
flux2_env = flux2_family.flux2_env
run_flux2 = flux2_family.run_flux2


@pytest.mark.parametrize("variant,family", [("dev", "flux2-dev"), ("klein", "flux2-klein")])
def test_flux2_files_are_flux2_not_flux1(variant: str, family: str, flux2_models: Any) -> None:
    from easel.models import family_files
    from easel.models.families import flux, flux2

    state = family_files.header(flux2_models[variant].transformer_file)
    assert state is not None
    assert flux.recognise(state) is None
    found = flux2.recognise(state)
    assert found is not None and found[0].name == family


@pytest.mark.parametrize("variant", ["dev", "klein"])
def test_transformer_config_read_off_the_shapes_is_the_models(
    variant: str, flux2_models: Any
) -> None:
    from easel.models import family_files
    from easel.models.families import flux2

    state = family_files.header(flux2_models[variant].transformer_file)
    assert state is not None
    ours = flux2.transformer_config(state)
    theirs = flux2_models[variant].pipe.transformer.config
    assert ours.pop("out_channels") == (theirs.out_channels or theirs.in_channels)
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in ours.items()} == {
        k: (list(theirs[k]) if isinstance(theirs[k], (list, tuple)) else theirs[k]) for k in ours
    }


@pytest.mark.parametrize("variant,kind", [("dev", "mistral"), ("klein", "qwen3")])
def test_text_encoder_config_read_off_the_shapes_is_the_models(
    variant: str, kind: str, flux2_models: Any
) -> None:
    from easel.models import family_files
    from easel.models.flux2_text_encoders import config_for, kind_of

    state = family_files.header(flux2_models[variant].text_encoder_file)
    assert state is not None
    assert kind_of(state) == (kind, "model.")
    ours = config_for(kind, state, "model.")
    theirs = flux2_models[variant].pipe.text_encoder.config
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "rope_parameters",
    ):
        assert getattr(ours, key) == getattr(theirs, key), key


def test_pruned_mistral_reads_its_last_layer_without_the_final_norm() -> None:
    """ComfyUI's 30-layer Mistral ends at layer 30, which Flux.2 reads: Easel takes that layer's
    output as the full model's hidden state 30 is (no final norm)."""
    from transformers import MistralConfig, MistralModel

    from easel.models.flux2_text_encoders import build

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=30,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=128,
        rope_theta=1e9,
        rms_norm_eps=1e-5,
        sliding_window=None,
    )
    reference = MistralModel(config).eval()
    state = {"model." + k: v for k, v in reference.state_dict().items()}
    ours = build("mistral", state, "model.", torch.float32)
    captured: list[Any] = []
    reference.layers[-1].register_forward_hook(lambda m, i, o: captured.append(o))
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.inference_mode():
        reference(input_ids=ids)
        hidden = ours(input_ids=ids, output_hidden_states=True).hidden_states[30]
    last = captured[0][0] if isinstance(captured[0], tuple) else captured[0]
    assert isinstance(ours.norm, torch.nn.Identity)
    assert torch.allclose(hidden, last, atol=1e-6)


def test_type_flux2_refuses_a_file_that_is_no_language_model(
    flux2_root: Path, run_flux2: Any
) -> None:
    target = flux2_root / "models" / "text_encoders" / "not-a-text-encoder.safetensors"
    shutil.copyfile(flux2_root / "models" / "vae" / "flux2-vae.safetensors", target)
    nodes = {
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": target.name, "type": "flux2"},
        },
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": "a"}},
    }
    result = run_flux2(nodes, ["pos"])
    [failure] = result.failures
    assert failure.node == "clip" and failure.input == "name"
    assert "Mistral-Small-3.x (dev) or a Qwen3 (Klein)" in failure.message
    assert target.name in failure.message


def test_a_missing_tokenizer_says_where_easel_looked(tmp_path: Path, flux2_models: Any) -> None:
    from easel.models.errors import ModelError
    from easel.models.flux2_text_encoders import tokenizer

    path = flux2_models["dev"].text_encoder_file
    with pytest.raises(ModelError) as caught:
        tokenizer("mistral", path, {}, [tmp_path], environ={})
    message = str(caught.value)
    assert path.name in message and "never downloads" in message
    assert "EASEL_MISTRAL_TOKENIZER" in message
    with pytest.raises(ModelError) as caught:
        tokenizer("qwen3", path, {}, [tmp_path], environ={"EASEL_QWEN3_TOKENIZER": "/nowhere"})
    assert "the configured tokenizer folder: /nowhere (missing)" in str(caught.value)


def test_a_reference_method_flux2_does_not_take_is_refused(run_flux2: Any) -> None:
    from tests.families.test_flux2_parity import workflow

    nodes = workflow("klein", steps=1)
    nodes["enc"] = {
        "type": "VAEEncode",
        "inputs": {"vae": ["vae", "vae"], "image": ["dec", "image"]},
    }
    nodes["ref"] = {
        "type": "ReferenceLatent",
        "inputs": {"conditioning": ["pos", "conditioning"], "latent": ["enc", "latent"]},
    }
    nodes["method"] = {
        "type": "FluxKontextMultiReferenceLatentMethod",
        "inputs": {"conditioning": ["ref", "conditioning"], "reference_latents_method": "offset"},
    }
    nodes["k2"] = {
        "type": "KSampler",
        "inputs": {**nodes["k"]["inputs"], "positive": ["method", "conditioning"]},
    }
    result = run_flux2(nodes, ["k2"])
    [failure] = result.failures
    assert failure.node == "k2"
    assert "'offset'" in failure.message and "index" in failure.message


def test_empty_flux2_latent_is_128_channels_at_a_sixteenth(run_flux2: Any) -> None:
    nodes = {
        "lat": {
            "type": "EmptyFlux2LatentImage",
            "inputs": {"width": 96, "height": 64, "batch_size": 2},
        },
        "odd": {"type": "EmptyFlux2LatentImage", "inputs": {"width": 100, "height": 64}},
    }
    result = run_flux2(nodes, ["lat", "odd"])
    assert result.status == "succeeded", result.failures
    assert tuple(result.values["lat"]["latent"]["samples"].shape) == (2, 128, 4, 6)
    odd = result.values["odd"]["latent"]
    assert tuple(odd["samples"].shape) == (1, 128, 4, 6) and odd["width"] == 96


def test_image_to_image_starts_from_the_encoded_image(run_flux2: Any, tmp_path: Path) -> None:
    """VAEEncode gives Flux.2 latents the sampler takes as they are (128 channels, no further
    scaling): at a low denoise the result stays near the input, at 1 it does not."""
    from tests.families.test_flux2_parity import workflow
    from tests.families.test_sd_parity import _inpaint_inputs

    path, _, _ = _inpaint_inputs(tmp_path)
    images = []
    for denoise in (0.2, 1.0):
        nodes = workflow("dev", steps=5)
        nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(path)}}
        nodes["enc"] = {
            "type": "VAEEncode",
            "inputs": {"vae": ["vae", "vae"], "image": ["img", "image"]},
        }
        nodes["back"] = {
            "type": "VAEDecode",
            "inputs": {"vae": ["vae", "vae"], "latent": ["enc", "latent"]},
        }
        nodes["k"]["inputs"].update(latent=["enc", "latent"], denoise=denoise)
        result = run_flux2(nodes, ["dec", "back"])
        assert result.status == "succeeded", result.failures
        assert tuple(result.values["enc"]["latent"]["samples"].shape) == (1, 128, 4, 4)
        images.append((result.values["dec"]["image"], result.values["back"]["image"]))
    (low, source), (full, _) = images
    assert (low - source).abs().mean() < (full - source).abs().mean()


REAL_TRANSFORMERS = {  # the released models' diffusers configs (shapes only, on meta)
    "dev": {},  # Flux2Transformer2DModel's defaults are FLUX.2-dev's
    "klein-4b": {
        "num_layers": 5,
        "num_single_layers": 20,
        "num_attention_heads": 24,
        "joint_attention_dim": 7680,
        "guidance_embeds": False,
    },
    "klein-9b": {
        "num_layers": 8,
        "num_single_layers": 24,
        "num_attention_heads": 32,
        "joint_attention_dim": 12288,
        "guidance_embeds": False,
    },
}


@pytest.mark.parametrize("name", sorted(REAL_TRANSFORMERS))
def test_released_transformer_sizes_are_read_off_their_shapes(name: str) -> None:
    """Full-size Flux.2 dev and Klein 4B / 9B (meta tensors in Black Forest Labs' keys) are
    recognised and sized as diffusers configures them (heads of 128, rope axes 32 x 4)."""
    from diffusers import Flux2Transformer2DModel

    from easel.models.families import flux, flux2

    with torch.device("meta"):
        model = Flux2Transformer2DModel(**REAL_TRANSFORMERS[name])
    state = flux2_family.transformer_bfl(model, "model.diffusion_model.")
    assert flux.recognise(state) is None
    found = flux2.recognise(state)
    assert found is not None
    assert found[0].name == ("flux2-dev" if name == "dev" else "flux2-klein")
    config = flux2.transformer_config(state)
    for key, value in config.items():
        expected = model.config[key] if key != "out_channels" else model.out_channels
        assert (list(expected) if isinstance(expected, tuple) else expected) == value, key


def test_released_text_encoder_sizes_are_read_off_their_shapes() -> None:
    """Mistral-Small-3.x's language model (Flux.2 dev) and Qwen3 4B (Klein) from their shapes."""
    from transformers import MistralConfig, MistralModel, Qwen3Config, Qwen3Model

    from easel.models.flux2_text_encoders import config_for, kind_of

    released = {
        "mistral": (
            MistralModel,
            MistralConfig(
                vocab_size=131072,
                hidden_size=5120,
                intermediate_size=32768,
                num_hidden_layers=40,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=128,
            ),
        ),
        "qwen3": (
            Qwen3Model,
            Qwen3Config(
                vocab_size=151936,
                hidden_size=2560,
                intermediate_size=9728,
                num_hidden_layers=36,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=128,
            ),
        ),
    }
    for kind, (cls, config) in released.items():
        with torch.device("meta"):
            model = cls(config)
        state = flux2_family.text_encoder_file(model)
        assert kind_of(state) == (kind, "model.")
        ours = config_for(kind, state, "model.")
        for key in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
        ):
            assert getattr(ours, key) == getattr(config, key), (kind, key)


def test_released_vae_size_is_read_off_its_shapes() -> None:
    """The Flux.2 VAE (AutoencoderKLFlux2's defaults are the released one's), in its file's
    keys (quant convs inside the encoder and decoder), is sized as diffusers configures it."""
    from diffusers import AutoencoderKLFlux2

    from easel.models.flux2_vae import _quant_convs_beside, autoencoder_config, is_flux2_vae

    with torch.device("meta"):
        model = AutoencoderKLFlux2()
    state = flux2_family.vae_file(model)
    assert "encoder.quant_conv.weight" in state and is_flux2_vae(state)
    config = autoencoder_config(_quant_convs_beside(state))
    for key, value in config.items():
        expected = model.config[key]
        assert (list(expected) if isinstance(expected, tuple) else expected) == (
            list(value) if isinstance(value, tuple) else value
        ), key
