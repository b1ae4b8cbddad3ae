"""MarigoldV2PostProcess against ComfyUI's formulas written out in numpy (depth: the channels'
mean normalised per image, nearest brightest; normals: unit vectors mapped to 0..1; albedo: the
sRGB transfer curve), on a batch of two random images of Easel's [B, C, H, W] layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from easel.core.node import NodeError
from tests.families.test_marigold_templates import postprocess


@pytest.mark.parametrize("prediction", ["depth", "normals", "albedo"])
def test_each_prediction_equals_comfyuis_formula_per_image(prediction: str) -> None:
    from easel.nodes.marigold import MarigoldV2PostProcess

    generator = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, 6, 5, generator=generator)
    images[1] *= 0.25  # another range: depth is normalised per image
    ours = MarigoldV2PostProcess.fn(images, prediction)["image"]
    assert ours.shape == (2, 3, 6, 5)
    for index in range(2):
        theirs = postprocess(images[index : index + 1].double().numpy(), prediction)
        assert np.abs(ours[index : index + 1].numpy() - theirs).max() <= 1e-6
    if prediction == "depth":
        assert float(ours.amax()) == pytest.approx(1.0) and float(ours.amin()) == 0.0


def test_flat_depth_and_a_grey_normal_do_not_divide_by_zero() -> None:
    from easel.nodes.marigold import MarigoldV2PostProcess

    flat = torch.full((1, 3, 4, 4), 0.3)
    assert torch.equal(MarigoldV2PostProcess.fn(flat, "depth")["image"], torch.zeros(1, 3, 4, 4))
    grey = torch.full((1, 3, 2, 2), 0.5)  # the zero vector
    assert torch.equal(MarigoldV2PostProcess.fn(grey, "normals")["image"], grey)
    with pytest.raises(NodeError, match="RGB"):
        MarigoldV2PostProcess.fn(torch.rand(1, 4, 2, 2), "normals")
