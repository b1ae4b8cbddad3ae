"""Upscale's crop "center" (ComfyUI's ImageScale): the middle at the new aspect ratio."""

from __future__ import annotations

import torch

from easel.nodes.upscale import center_crop


def test_center_crop_keeps_the_middle_at_the_new_aspect() -> None:
    image = torch.arange(4 * 8, dtype=torch.float32).reshape(1, 1, 4, 8)
    square = center_crop(image, 10, 10)
    assert square.shape == (1, 1, 4, 4)
    assert torch.equal(square, image[..., :, 2:6])
    tall = center_crop(image, 2, 4)  # 1:2 from 2:1
    assert tall.shape == (1, 1, 4, 2) and torch.equal(tall, image[..., :, 3:5])


def test_upscale_with_center_crop_resizes_the_cropped_middle() -> None:
    from easel.core.context import Context
    from easel.nodes.upscale import Upscale

    image = torch.zeros(1, 3, 8, 16)
    image[..., 4:12] = 1.0  # a white middle square on black
    ctx = Context()
    out = Upscale.fn(
        ctx=ctx, image=image, method="nearest", scale=1.0, width=4, height=4, crop="center"
    )
    assert out.shape == (1, 3, 4, 4)
    assert torch.equal(out, torch.ones(1, 3, 4, 4))
    plain = Upscale.fn(
        ctx=ctx, image=image, method="nearest", scale=1.0, width=4, height=4, crop="disabled"
    )
    assert not torch.equal(plain, out)  # squeezed, not cropped: black sides remain
