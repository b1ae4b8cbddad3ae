"""Empty latents whose pixel size is not a multiple of the model's VAE factor are sized as
ComfyUI sizes them: an 8x latent (floored), rescaled to the model's factor and rounded."""

from types import SimpleNamespace

import pytest
import torch

from easel.nodes.sampling import empty_latent_size, latent_shape


@pytest.mark.parametrize(
    ("pixels", "factor", "cells"),
    [
        (1024, 8, 128),
        (1001, 8, 125),  # floored, as EmptyLatentImage's width // 8
        (1296, 16, 81),
        (728, 16, 46),  # 91 8x cells -> 45.5 -> 46 (ComfyUI's round)
        (720, 16, 45),
        (16, 2, 8),  # the demo model's factor 2
        (17, 2, 8),
        (4, 16, 1),  # never zero
    ],
)
def test_empty_latent_size(pixels: int, factor: int, cells: int) -> None:
    assert empty_latent_size(pixels, factor) == cells


def test_latent_shape_rounds_an_empty_latent_and_keeps_a_sampled_one() -> None:
    model = SimpleNamespace(vae_scale_factor=16, latent_channels=24)
    empty = {"samples": torch.zeros(2, 4, 91, 162), "width": 1296, "height": 728}
    assert latent_shape(model, empty, full=True) == (2, 24, 46, 81)
    sampled = {"samples": torch.zeros(1, 24, 46, 81)}
    assert latent_shape(model, sampled, full=False) == (1, 24, 46, 81)


def test_empty_latent_floors_an_unaligned_size_with_a_warning() -> None:
    from easel.core.context import Context
    from easel.nodes.latent import EmptyLatent

    seen: list[str] = []
    inputs = {"width": 1365, "height": 768, "batch_size": 1, "vae": None}
    out = EmptyLatent.call(Context(on_warning=seen.append), inputs)
    assert tuple(out["latent"]["samples"].shape) == (1, 4, 96, 170)
    assert len(seen) == 1 and "width 1365" in seen[0] and "1360 pixels" in seen[0]
