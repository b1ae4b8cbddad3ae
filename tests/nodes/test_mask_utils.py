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
    assert picture.shape == (2, 3, 4, 5) and all(torch.equal(picture[:, c], mask) for c in range(3))


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


def test_empty_image_and_solid_mask() -> None:
    from easel.nodes.mask_utils import EmptyImage, SolidMask

    red = call(EmptyImage, width=4, height=2, batch_size=2, color=0xFF8000)["image"]
    assert red.shape == (2, 3, 2, 4)
    assert red[0, :, 0, 0].tolist() == pytest.approx([1.0, 128 / 255, 0.0])
    mask = call(SolidMask, value=0.25, width=3, height=2)["mask"]
    assert mask.shape == (1, 2, 3) and torch.all(mask == 0.25)
    with pytest.raises(NodeError) as caught:
        call(EmptyImage, Context(services={"budget": 100}), width=20, height=20)
    assert caught.value.input == "width"


def test_threshold_and_feather_as_comfyui() -> None:
    from easel.nodes.mask_utils import FeatherMask, ThresholdMask

    mask = torch.tensor([[[0.2, 0.5, 0.7]]])
    assert call(ThresholdMask, mask=mask, value=0.5)["mask"].tolist() == [[[0.0, 0.0, 1.0]]]
    ones = torch.ones(1, 1, 4)
    assert call(FeatherMask, mask=ones, left=2)["mask"].tolist() == [[[0.5, 1.0, 1.0, 1.0]]]
    # ComfyUI's right ramp starts on column -0 (the first one): kept, to match its masks.
    assert call(FeatherMask, mask=ones, right=2)["mask"].tolist() == [[[0.5, 1.0, 1.0, 1.0]]]
    assert call(FeatherMask, mask=ones, right=4)["mask"].tolist() == [[[0.25, 1.0, 0.75, 0.5]]]


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("multiply", [0.0, 0.3, 0.6, 0.0]),
        ("add", [0.0, 1.0, 1.0, 0.0]),
        ("subtract", [0.0, 0.0, 0.0, 0.0]),
        ("and", [0.0, 0.0, 1.0, 0.0]),
        ("or", [0.0, 1.0, 1.0, 0.0]),
        ("xor", [0.0, 1.0, 0.0, 0.0]),
    ],
)
def test_mask_composite_places_the_source(operation, expected) -> None:
    from easel.nodes.mask_utils import MaskComposite

    destination = torch.tensor([[[0.0, 0.3, 0.6, 0.0]]])
    source = torch.tensor([[[1.0, 1.0]]])
    out = call(
        MaskComposite, destination=destination, source=source, x=1, y=0, operation=operation
    )["mask"]
    assert out[0, 0].tolist() == pytest.approx(expected)


def test_image_composite_masked_pastes_through_the_mask() -> None:
    from easel.nodes.mask_utils import ImageCompositeMasked

    destination, source = torch.zeros(1, 3, 4, 4), torch.ones(2, 3, 2, 2)
    out = call(ImageCompositeMasked, destination=destination, source=source, x=3, y=1)["image"]
    assert out.shape == (1, 3, 4, 4)
    assert out[0, 0].tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    masked = call(
        ImageCompositeMasked, destination=destination, source=source, x=0, y=0, mask=mask
    )["image"]
    assert masked[0, 0, :2, :2].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    resized = call(
        ImageCompositeMasked, destination=torch.zeros(1, 4, 4, 4), source=source, resize_source=True
    )["image"]
    assert resized.shape == (1, 4, 4, 4) and torch.all(resized == 1.0)  # RGB gets alpha 1


def reference_pad_mask(height, width, left, top, right, bottom, feathering):
    """ComfyUI's loop, written out: the expected mask inside the image."""
    inner = torch.zeros(height, width)
    if feathering > 0 and feathering * 2 < height and feathering * 2 < width:
        for i in range(height):
            for j in range(width):
                d = min(
                    i if top else height,
                    height - i if bottom else height,
                    j if left else width,
                    width - j if right else width,
                )
                if d < feathering:
                    inner[i, j] = ((feathering - d) / feathering) ** 2
    return inner


@pytest.mark.parametrize(
    "pads", [(8, 0, 16, 4, 5), (0, 8, 0, 8, 3), (8, 8, 8, 8, 0), (4, 0, 0, 0, 20)]
)
def test_image_pad_for_outpaint_as_comfyui(pads) -> None:
    from easel.nodes.mask_utils import ImagePadForOutpaint

    left, top, right, bottom, feathering = pads
    image = torch.rand(2, 3, 12, 20)
    out = call(
        ImagePadForOutpaint,
        image=image,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        feathering=feathering,
    )
    canvas, mask = out["image"], out["mask"]
    assert canvas.shape == (2, 3, 12 + top + bottom, 20 + left + right)
    assert torch.equal(canvas[:, :, top : top + 12, left : left + 20], image)
    assert mask.shape == (1, 12 + top + bottom, 20 + left + right)
    border = torch.ones_like(mask[0])
    border[top : top + 12, left : left + 20] = 0
    assert torch.all(mask[0][border.bool()] == 1.0)
    if left:
        assert torch.all(canvas[:, :, :, :left] == 0.5)
    inner = mask[0, top : top + 12, left : left + 20]
    assert torch.allclose(inner, reference_pad_mask(12, 20, *pads), atol=1e-6)
