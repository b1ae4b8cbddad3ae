"""Mage-Flow's transformer. No library has Mage-Flow, so there is no pipeline to compare with:

- with its RoPE and its (bf16-rounded) timestep frequency table given to both, Easel's
  MageFlowTransformer2DModel equals diffusers' QwenImageTransformer2DModel (patch size 1, the
  same weights and tokens): the blocks, the input and output layers and the timestep MLP are
  diffusers' own;
- the RoPE positions and rotations, and the timestep embedding with its table rounded to
  bf16, equal direct computations of Mage's formulas.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from tests.fixtures import mage_family

SIZE = (3, 5)  # an odd latent: the centring differs from Qwen-Image's there
REFERENCE = (4, 2)


@pytest.fixture(scope="module")
def model() -> Any:
    torch.manual_seed(3)
    return mage_family.transformer()


class MageTable(torch.nn.Module):
    """Stands in for diffusers' sinusoidal timestep projection: Mage's rounded table."""

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        from easel.models.mage_transformer import timestep_frequencies

        return timestep_frequencies(sigma, torch.bfloat16)


class FixedRope(torch.nn.Module):
    """Stands in for diffusers' QwenEmbedRope: returns the given rotations."""

    def __init__(self, rotary: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        self.rotary = rotary

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rotary


def test_transformer_equals_diffusers_qwen_image_with_the_same_rope_and_table(
    model: Any,
) -> None:
    from diffusers import QwenImageTransformer2DModel

    config = model.config
    qwen = QwenImageTransformer2DModel(
        patch_size=1,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        num_layers=config.num_layers,
        attention_head_dim=config.attention_head_dim,
        num_attention_heads=config.num_attention_heads,
        joint_attention_dim=config.joint_attention_dim,
        axes_dims_rope=tuple(config.axes_dims_rope),
    ).eval()
    missing, unexpected = qwen.load_state_dict(model.state_dict(), strict=False)
    assert not missing and not unexpected  # the same module names: the file keys load as is

    generator = torch.Generator().manual_seed(5)
    latents = torch.randn(1, 128, *SIZE, generator=generator)
    reference = torch.randn(1, 128, *REFERENCE, generator=generator)
    text = torch.randn(1, 7, config.joint_attention_dim, generator=generator)
    sigma = torch.tensor([0.37])
    with torch.no_grad():
        ours = model(latents, text, sigma, [reference])
        qwen.pos_embed = FixedRope(model.rope([SIZE, REFERENCE], text.shape[1], "cpu"))
        qwen.time_text_embed.time_proj = MageTable()
        tokens = torch.cat(
            [latents.flatten(2).transpose(1, 2), reference.flatten(2).transpose(1, 2)], dim=1
        )
        theirs = qwen(
            hidden_states=tokens,
            encoder_hidden_states=text,
            timestep=sigma,
            img_shapes=[[(1, *SIZE), (1, *REFERENCE)]],
            return_dict=False,
        )[0]
    count = SIZE[0] * SIZE[1]
    theirs = theirs[:, :count].transpose(1, 2).reshape(1, 128, *SIZE)
    diff = (ours - theirs).abs().max().item()
    print(f"Mage-Flow transformer vs diffusers' Qwen-Image blocks: {diff:.2e}")
    assert diff <= 1e-5
    assert float(ours.std()) > 0.1


def test_image_positions_are_centred_as_mage_and_references_are_on_the_frame_axis() -> None:
    from easel.models.mage_transformer import image_positions

    positions = image_positions(2, 3, 4)
    expected = [(2, row, col) for row in (-2, -1, 0) for col in (-2, -1, 0, 1)]
    assert positions.tolist() == [list(map(float, p)) for p in expected]


def test_rope_rotations_equal_the_formula_and_text_is_not_rotated(model: Any) -> None:
    image, text = model.rope([SIZE, REFERENCE], 6, "cpu")
    axes, theta = list(model.config.axes_dims_rope), 10000.0
    # direct: token (f, r, c); angle of pair j of axis a is p_a * theta^(-2j / d_a)
    tokens = [(0, r, c) for r in range(-2, 1) for c in range(-3, 2)]
    tokens += [(1, r, c) for r in range(-2, 2) for c in range(-1, 1)]
    direct = np.zeros((len(tokens), sum(axes) // 2), dtype=np.complex128)
    for i, position in enumerate(tokens):
        column = 0
        for p, d in zip(position, axes, strict=True):
            for j in range(d // 2):
                direct[i, column] = np.exp(1j * p * theta ** (-2 * j / d))
                column += 1
    assert np.abs(image.numpy() - direct).max() < 1e-6
    assert torch.equal(text, torch.ones_like(text))


def test_timestep_embedding_rounds_its_table_to_the_model_dtype() -> None:
    from diffusers.models.embeddings import Timesteps

    from easel.models.mage_transformer import timestep_frequencies

    sigma = torch.tensor([0.8731, 0.0417])
    # direct: f_k = exp(-ln(10000) k / 128) rounded to bf16, sigma rounded to bf16
    table = torch.tensor(
        [math.exp(-math.log(10000) * k / 128) for k in range(128)], dtype=torch.float64
    ).to(torch.bfloat16)
    rounded = sigma.to(torch.bfloat16).double()
    angles = 1000.0 * rounded[:, None] * table.double()[None, :]
    direct = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    ours = timestep_frequencies(sigma, torch.bfloat16).double()
    assert (ours - direct).abs().max().item() < 1e-3  # float32 products of the rounded values
    # the rounding matters: the float32 table's angles are far off at high frequencies
    assert (ours - timestep_frequencies(sigma, torch.float32).double()).abs().max().item() > 0.1
    # in float32 it is diffusers' Qwen-Image timestep projection
    qwen = Timesteps(num_channels=256, flip_sin_to_cos=True, downscale_freq_shift=0, scale=1000)
    assert torch.allclose(timestep_frequencies(sigma, torch.float32), qwen(sigma), atol=1e-6)
