"""LatentCut and LatentCutToBatch, as ComfyUI's (comfy_extras/nodes_latent.py): axes counted
from the end of the shape, indices clamped to the latent, remainders dropped."""

from __future__ import annotations

import pytest
import torch

from easel.core.node import NodeError
from easel.nodes.latent_cut import LatentCut, LatentCutToBatch


def call(node_type, **inputs):
    return node_type.call(None, {**node_type.value_defaults, **inputs})


def _latent(*shape: int) -> dict[str, torch.Tensor]:
    return {"samples": torch.arange(torch.Size(shape).numel(), dtype=torch.float32).view(shape)}


def test_cut_frames_of_a_layered_latent() -> None:
    """The Layered templates' LatentCut("t", 1, 16384): every frame but the first."""
    latent = _latent(2, 16, 4, 3, 5)
    out = call(LatentCut, samples=latent, dim="t", index=1, amount=16384)["latent"]
    assert torch.equal(out["samples"], latent["samples"][:, :, 1:])


@pytest.mark.parametrize(
    ("index", "amount", "expected"),
    [(0, 2, slice(0, 2)), (3, 5, slice(3, 6)), (9, 1, slice(5, 6)), (-2, 5, slice(4, 6)),
     (-9, 2, slice(0, 2))],
)  # fmt: skip
def test_cut_x_clamps_like_comfyui(index: int, amount: int, expected: slice) -> None:
    latent = _latent(1, 4, 2, 6)
    out = call(LatentCut, samples=latent, dim="x", index=index, amount=amount)["latent"]
    assert torch.equal(out["samples"], latent["samples"][..., expected])


def test_cut_y_drops_a_noise_mask_that_no_longer_fits() -> None:
    latent = {**_latent(1, 4, 6, 6), "noise_mask": torch.ones(1, 1, 6, 6)}
    out = call(LatentCut, samples=latent, dim="y", index=2, amount=2)["latent"]
    assert out["samples"].shape == (1, 4, 2, 6) and "noise_mask" not in out


def test_cut_t_of_a_4d_latent_names_the_input() -> None:
    with pytest.raises(NodeError) as info:
        call(LatentCut, samples=_latent(1, 4, 6, 6), dim="t", index=0, amount=1)
    assert info.value.input == "dim" and "no 't' axis" in info.value.message


def test_cut_to_batch_splits_layers_into_the_batch() -> None:
    """[B, C, T, h, w] along "t" by 1: B * T one-frame latents, batch-major."""
    latent = _latent(2, 3, 4, 2, 2)
    out = call(LatentCutToBatch, samples=latent, dim="t", slice_size=1)["latent"]["samples"]
    assert out.shape == (8, 3, 1, 2, 2)
    assert torch.equal(out[5, :, 0], latent["samples"][1, :, 1])


def test_cut_to_batch_drops_the_remainder_and_passes_4d_t_through() -> None:
    latent = _latent(1, 2, 3, 5)
    out = call(LatentCutToBatch, samples=latent, dim="x", slice_size=2)["latent"]["samples"]
    assert out.shape == (2, 2, 3, 2)
    assert torch.equal(out[1], latent["samples"][0, :, :, 2:4])
    same = call(LatentCutToBatch, samples=latent, dim="t", slice_size=1)["latent"]
    assert same is latent
