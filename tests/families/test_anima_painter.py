"""Painter (ComfyUI's canvas node, which Anima's LLLite inpainting template draws its mask with):
the drawing PNG read from the upload folder (ComfyUI's " [temp]" annotation dropped), painted
over the image or a background, its alpha the MASK; a missing drawing named at `mask`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from easel.core.context import Context
from easel.core.node import NodeError
from easel.nodes.painter import Painter


def drawing(path: Path, size: int) -> np.ndarray:
    """An RGBA drawing: a half-transparent green band and an opaque red square."""
    pixels = np.zeros((size, size, 4), dtype=np.uint8)
    pixels[: size // 4] = (0, 255, 0, 128)
    pixels[size // 2 :, size // 2 :] = (255, 0, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels, mode="RGBA").save(path)
    return pixels


def test_the_drawing_is_painted_over_the_image_and_its_alpha_is_the_mask(tmp_path: Path) -> None:
    pixels = drawing(tmp_path / "painter" / "painter-694-1.png", 32)
    ctx = Context(services={"input_dir": str(tmp_path)})
    base = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    inputs = {"mask": "painter/painter-694-1.png [temp]", "width": 64, "height": 64}
    out = Painter.call(ctx, {**inputs, "bg_color": "#000000", "image": base})
    rgba = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]
    alpha = rgba[:, 3:]
    expected = rgba[:, :3] * alpha + base[:1] * (1 - alpha)
    assert torch.allclose(out["image"], expected, atol=1e-6)
    assert torch.equal(out["mask"], alpha[:, 0])

    plain = Painter.call(ctx, {**inputs, "mask": "", "bg_color": "#ff8000"})
    assert plain["image"].shape == (1, 3, 64, 64)
    assert plain["image"][0, :, 0, 0].tolist() == pytest.approx([1.0, 128 / 255, 0.0])
    assert not plain["mask"].any()


def test_a_missing_drawing_names_the_mask_input(tmp_path: Path) -> None:
    ctx = Context(services={"input_dir": str(tmp_path)})
    inputs = {"mask": "painter/gone.png [temp]", "width": 64, "height": 64, "bg_color": "#000000"}
    with pytest.raises(NodeError) as error:
        Painter.call(ctx, inputs)
    assert error.value.input == "mask" and "painter/gone.png" in error.value.message
