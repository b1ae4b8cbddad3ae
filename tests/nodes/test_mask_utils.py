"""InvertImage, InvertMask, ImageToMask, MaskToImage, JoinImageWithAlpha and PreviewMask, as
ComfyUI's ImageInvert, InvertMask, ImageToMask, MaskToImage, JoinImageWithAlpha, MaskPreview."""

from __future__ import annotations

import pytest
import torch

from easel.core.context import Context
from easel.core.node import NodeError
from easel.nodes.mask_utils import (
    ImageToMask,
    InvertImage,
    InvertMask,
    JoinImageWithAlpha,
    MaskToImage,
    PreviewMask,
)


def call(node_type, ctx=None, **inputs):
    return node_type.call(ctx or Context(), {**node_type.value_defaults, **inputs})


def test_inversions() -> None:
    image, mask = torch.rand(2, 3, 4, 5), torch.rand(2, 4, 5)
    assert torch.equal(call(InvertImage, image=image)["image"], 1.0 - image)
    assert torch.equal(call(InvertMask, mask=mask)["mask"], 1.0 - mask)


def test_channels_to_masks_and_back() -> None:
    image = torch.rand(2, 4, 4, 5)
    assert torch.equal(call(ImageToMask, image=image, channel="green")["mask"], image[:, 1])
    assert torch.equal(call(ImageToMask, image=image, channel="alpha")["mask"], image[:, 3])
    with pytest.raises(NodeError) as caught:
        call(ImageToMask, image=image[:, :3], channel="alpha")
    assert caught.value.input == "channel"
    mask = torch.rand(2, 4, 5)
    picture = call(MaskToImage, mask=mask)["image"]
    assert picture.shape == (2, 3, 4, 5) and all(torch.equal(picture[:, c], mask)
                                                 for c in range(3))


def test_join_image_with_alpha_inverts_and_resizes_the_mask() -> None:
    image = torch.rand(3, 3, 8, 8)
    mask = torch.zeros(2, 4, 4)
    mask[:, :2] = 1.0  # the top half is transparent
    joined = call(JoinImageWithAlpha, image=image, alpha=mask)["image"]
    assert joined.shape == (2, 4, 8, 8)  # the shorter batch
    assert torch.equal(joined[:, :3], image[:2])
    assert torch.equal(joined[:, 3, 0], torch.zeros(2, 8))
    assert torch.equal(joined[:, 3, -1], torch.ones(2, 8))


def test_preview_mask_writes_grey_pictures(tmp_path) -> None:
    out = call(PreviewMask, Context(output_dir=tmp_path), mask=torch.rand(2, 4, 5))
    assert len(out["ui"]["files"]) == 2
    assert all((tmp_path / name).is_file() for name in out["ui"]["files"])
