"""ImageSize, ScaleToTotalPixels, ResizeImageMask, ImageStitch, Canny and BatchImages: sizes
and pixels as ComfyUI's nodes give them, on Easel's [B, C, H, W] images and [B, H, W] masks."""

from __future__ import annotations

import pytest
import torch

from easel.core.context import Context
from easel.core.node import NodeError
from easel.nodes.image_utils import (
    BatchImages,
    Canny,
    ImageSize,
    ImageStitch,
    ResizeImageMask,
    ScaleToTotalPixels,
)
from easel.nodes.upscale import resample


def call(node_type, ctx=None, **inputs):
    return node_type.call(ctx or Context(), {**node_type.value_defaults, **inputs})


def image(batch=1, channels=3, height=32, width=64, value=None):
    generator = torch.Generator().manual_seed(0)
    if value is not None:
        return torch.full((batch, channels, height, width), float(value))
    return torch.rand(batch, channels, height, width, generator=generator)


def test_image_size() -> None:
    assert call(ImageSize, image=image(2)) == {"width": 64, "height": 32, "batch_size": 2}


@pytest.mark.parametrize(("steps", "size"), [(1, (72, 145)), (16, (80, 144))])
def test_scale_to_total_pixels(steps, size) -> None:
    # 0.01 MP = 10485.76 px: 64x32 scales by 2.2627 -> 144.8 x 72.4; in steps of 16:
    # round(9.05) * 16 x round(4.53) * 16.
    source = image()
    out = call(
        ScaleToTotalPixels, image=source, method="bilinear", megapixels=0.01, resolution_steps=steps
    )["image"]
    assert tuple(out.shape) == (1, 3, *size)
    assert torch.equal(out, resample(source, size, "bilinear"))


def test_scale_to_total_pixels_respects_the_budget() -> None:
    with pytest.raises(NodeError) as caught:
        call(
            ScaleToTotalPixels, Context(services={"budget": 10_000}), image=image(), megapixels=1.0
        )
    assert caught.value.input == "megapixels" and "budget" in caught.value.message


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ({"resize_type": "scale dimensions", "width": 32, "height": 0}, (16, 32)),
        (
            {"resize_type": "scale dimensions", "width": 16, "height": 16, "crop": "disabled"},
            (16, 16),
        ),
        ({"resize_type": "scale by multiplier", "multiplier": 0.5}, (16, 32)),
        ({"resize_type": "scale longer dimension", "longer_size": 128}, (64, 128)),
        ({"resize_type": "scale shorter dimension", "shorter_size": 8}, (8, 16)),
        ({"resize_type": "scale width", "width": 16}, (8, 16)),
        ({"resize_type": "scale height", "height": 16}, (16, 32)),
        ({"resize_type": "scale total pixels", "megapixels": 0.001953125}, (32, 64)),
        ({"resize_type": "scale to multiple", "multiple": 24}, (24, 48)),
    ],
)
def test_resize_image_mask_sizes(options, size) -> None:
    out = call(ResizeImageMask, input=image(), scale_method="bilinear", **options)["resized"]
    assert tuple(out.shape) == (1, 3, *size)
    mask = call(ResizeImageMask, input=image()[:, 0], scale_method="bilinear", **options)["resized"]
    assert tuple(mask.shape) == (1, *size)


def test_resize_with_center_crop_keeps_the_middle() -> None:
    source = torch.zeros(1, 3, 32, 64)
    source[..., 16:48] = 1.0  # the middle square is white, the sides black
    out = call(
        ResizeImageMask,
        input=source,
        resize_type="scale dimensions",
        width=16,
        height=16,
        crop="center",
        scale_method="nearest",
    )["resized"]
    assert torch.equal(out, torch.ones(1, 3, 16, 16))
    matched = call(
        ResizeImageMask,
        input=source,
        resize_type="match size",
        match=torch.zeros(1, 8, 8),
        crop="center",
        scale_method="nearest",
    )["resized"]
    assert torch.equal(matched, torch.ones(1, 3, 8, 8))


def test_resize_names_a_missing_match_and_a_wrong_input() -> None:
    with pytest.raises(NodeError) as caught:
        call(ResizeImageMask, input=image(), resize_type="match size")
    assert caught.value.input == "match"
    with pytest.raises(NodeError) as caught:
        call(ResizeImageMask, input=torch.zeros(3))
    assert caught.value.input == "input"


def test_stitch_right_matches_image2_to_image1s_height() -> None:
    left, right = image(value=0.25), image(height=16, width=16, value=0.75)
    out = call(ImageStitch, image1=left, image2=right, direction="right")["image"]
    assert tuple(out.shape) == (1, 3, 32, 96)
    assert torch.allclose(out[..., :64], left) and torch.allclose(
        out[..., 64:], torch.full((1, 3, 32, 32), 0.75), atol=1e-5
    )
    up = call(ImageStitch, image1=left, image2=right, direction="up")["image"]
    assert tuple(up.shape) == (1, 3, 96, 64) and torch.allclose(up[..., 64:, :], left)


def test_stitch_with_spacing_and_padding() -> None:
    first, second = image(value=0.5), image(height=16, width=8, value=0.5)
    out = call(
        ImageStitch,
        image1=first,
        image2=second,
        direction="right",
        match_image_size=False,
        spacing_width=3,
        spacing_color="red",
    )["image"]
    assert tuple(out.shape) == (1, 3, 32, 64 + 4 + 8)  # spacing rounded up to even
    spacer = out[..., 64:68]
    assert torch.equal(spacer[:, 0], torch.ones(1, 32, 4))
    assert torch.equal(spacer[:, 1:], torch.zeros(1, 2, 32, 4))
    padded = out[..., 68:]
    # The smaller image is centred on padding of the spacing colour's grey (black for red).
    assert torch.equal(padded[..., :8, :], torch.zeros(1, 3, 8, 8))
    assert torch.equal(padded[..., 8:24, :], torch.full((1, 3, 16, 8), 0.5))
    assert call(ImageStitch, image1=first)["image"] is first


def test_stitch_repeats_the_last_image_of_the_shorter_batch() -> None:
    out = call(ImageStitch, image1=image(batch=3), image2=image(batch=1, value=1.0))["image"]
    assert out.shape[0] == 3
    assert torch.allclose(out[2, :, :, 64:], torch.ones(3, 32, 64), atol=1e-5)


def test_canny_is_kornias_canny_as_comfyui_calls_it() -> None:
    from kornia.filters import canny

    source = torch.zeros(1, 3, 32, 32)
    source[..., 8:24, 8:24] = 1.0
    out = call(Canny, image=source, low_threshold=0.2, high_threshold=0.5)["image"]
    assert tuple(out.shape) == (1, 3, 32, 32)
    assert torch.equal(out, canny(source, 0.2, 0.5)[1].repeat(1, 3, 1, 1))
    edges = out[0, 0]
    assert edges[16, 7:9].max() == 1 and edges[16, 16] == 0 and edges[2, 2] == 0
    with pytest.raises(NodeError) as caught:
        call(Canny, image=source, low_threshold=0.9, high_threshold=0.5)
    assert caught.value.input == "low_threshold"


def test_batch_images_resizes_to_the_first_and_adds_alpha() -> None:
    first, second = image(channels=4), image(height=16, width=32, value=0.5)
    out = call(BatchImages, ctx=Context(), image0=first, image2=second)["image"]
    assert tuple(out.shape) == (2, 4, 32, 64)
    assert torch.equal(out[0], first[0])
    assert torch.allclose(out[1, :3], torch.full((3, 32, 64), 0.5))
    assert torch.equal(out[1, 3], torch.ones(32, 64))
    with pytest.raises(NodeError):
        call(BatchImages)


@pytest.mark.parametrize(
    ("ratio", "megapixels", "multiple", "size"),
    [
        ("1:1 (Square)", 1.0, 8, (1024, 1024)),
        ("16:9 (Widescreen)", 1.0, 8, (1368, 768)),  # 1365.3 x 768 in steps of 8
        ("16:9 (Widescreen)", 0.4, 32, (864, 480)),  # 863.4 x 485.7 in steps of 32
        ("2:3 (Portrait Photo)", 0.5, 16, (592, 880)),  # 591.2 x 886.8
    ],
)
def test_resolution_selector(ratio, megapixels, multiple, size) -> None:
    from easel.nodes.image_utils import ResolutionSelector

    out = call(ResolutionSelector, aspect_ratio=ratio, megapixels=megapixels, multiple=multiple)
    assert (out["width"], out["height"]) == size


def test_compare_images_previews_both(tmp_path) -> None:
    from easel.nodes.image_utils import CompareImages

    ctx = Context(output_dir=tmp_path)
    out = call(CompareImages, ctx, image_a=image(2), image_b=image(value=1.0))
    assert len(out["ui"]["a_images"]) == 2 and len(out["ui"]["b_images"]) == 1
    assert all((tmp_path / name).is_file() for name in out["ui"]["a_images"])
    assert call(CompareImages, ctx, image_b=image())["ui"]["a_images"] == []


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((32, 64), (720, 1456)),  # 2:1 -> the nearest, 1456 x 720 (2.02)
        ((100, 100), (1024, 1024)),
        ((90, 60), (1248, 832)),  # 2:3 portrait -> 832 x 1248
    ],
)
def test_flux_kontext_image_scale(size, expected) -> None:
    from easel.nodes.image_utils import FluxKontextImageScale

    height, width = size
    out = call(FluxKontextImageScale, image=image(height=height, width=width))["image"]
    assert tuple(out.shape[-2:]) == expected
