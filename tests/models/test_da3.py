"""Depth Anything 3 Mono-Large from ComfyUI's file layout against the reference implementation,
the PyPI package `depth_anything_3` (0.1.1; scripts/test installs it with --no-deps), on tiny
random weights; DA3Render against its formulas written in numpy; ComfyUI's
`utility_depth_anything3_image_depth_estimation` template end to end."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.fixtures import da3_files

TOLERANCE = 1e-4
TEMPLATE = "utility_depth_anything3_image_depth_estimation"
TEMPLATE_FILE = "depth_anything_3_mono_large.safetensors"
needs_reference = pytest.mark.skipif(
    importlib.util.find_spec("depth_anything_3") is None,
    reason="the reference package depth_anything_3 is installed by scripts/test (--no-deps)",
)


@pytest.fixture(scope="module")
def da3_state() -> dict[str, Any]:
    return da3_files.comfy_state()


def _reference(state: dict[str, Any], pixels: Any) -> tuple[Any, Any]:
    network = da3_files.reference_network(state)
    height, width = pixels.shape[-2:]
    with torch.no_grad():
        features, _ = network.backbone(pixels[:, None])
        out = network.head(features, height, width, patch_start_idx=0)
    return out["depth"].reshape(-1, height, width), out["sky"].reshape(-1, height, width)


@needs_reference
def test_network_equals_the_reference_package_on_a_non_square_grid(
    da3_state: dict[str, Any],
) -> None:
    """378 x 504 pixels: a 27 x 36 patch grid, so the 37 x 37 position table is resized."""
    from easel.models import depth_anything3

    network, sky = depth_anything3.build(da3_state, "tiny")
    assert sky
    pixels = torch.randn(1, 3, 378, 504, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        depth, sky_map = network(pixels)
    their_depth, their_sky = _reference(da3_state, pixels)
    assert float((depth - their_depth).abs().max()) <= TOLERANCE
    assert float((sky_map - their_sky).abs().max()) <= TOLERANCE
    assert float(their_depth.std()) > 1e-3  # the maps are not flat


@needs_reference
def test_inference_node_equals_the_reference_on_a_lanczos_resized_image(
    da3_state: dict[str, Any],
) -> None:
    """DA3Inference: the image resized (longest side 140, sides multiples of 14), normalised,
    run, and the maps resized back bilinearly."""
    import torch.nn.functional as F
    from PIL import Image as PILImage

    from easel.models.depth_anything3 import Da3Handle, build
    from easel.nodes.depth_anything3 import DA3Inference

    network, _ = build(da3_state, "tiny")
    image = torch.rand(1, 3, 30, 50, generator=torch.Generator().manual_seed(1))

    class Ctx:
        def check_cancelled(self) -> None: ...

        def progress(self, *_: Any) -> None: ...

    handle = Da3Handle("tiny", network)
    out = DA3Inference.fn(Ctx(), handle, image, 140, "upper_bound_resize", "mono")
    geometry = out["da3_geometry"]
    height, width = 84, 140  # 30 * 2.8 = 84, 50 * 2.8 = 140
    planes = [
        np.asarray(
            PILImage.fromarray(plane.numpy(), mode="F").resize(
                (width, height), PILImage.Resampling.LANCZOS
            )
        )
        for plane in image[0]
    ]
    resized = torch.from_numpy(np.stack(planes))[None].clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    depth, sky = _reference(da3_state, (resized - mean) / std)
    depth = F.interpolate(depth[:, None], (30, 50), mode="bilinear")[:, 0]
    sky = F.interpolate(sky[:, None], (30, 50), mode="bilinear")[:, 0]
    assert geometry["depth"].shape == geometry["sky"].shape == (1, 30, 50)
    assert float((geometry["depth"] - depth).abs().max()) <= TOLERANCE
    assert float((geometry["sky"] - sky).abs().max()) <= TOLERANCE


def test_target_size_rounds_each_side_to_the_nearest_multiple_of_14() -> None:
    from easel.nodes.depth_anything3 import target_size

    assert target_size(768, 1024, 504, "upper_bound_resize") == (378, 504)
    assert target_size(768, 1024, 504, "lower_bound_resize") == (504, 672)
    assert target_size(30, 50, 140, "upper_bound_resize") == (84, 140)


def _v2_numpy(depth: np.ndarray, sky: np.ndarray) -> np.ndarray:
    ground = sky < 0.3
    valid = depth[ground] if ground.any() else depth.ravel()
    low, high = np.quantile(valid, 0.01), np.quantile(valid, 0.99)
    norm = 1.0 - np.clip((depth - low) / max(high - low, 1e-6), 0.0, 1.0)
    return np.where(sky >= 0.3, 0.0, norm)


def test_render_depth_v2_style_min_max_sky_clip_and_sky_mask() -> None:
    from easel.nodes.depth_anything3 import DA3Render

    generator = torch.Generator().manual_seed(2)
    depth = torch.rand(2, 12, 16, generator=generator) * 5 + 0.5
    sky = torch.zeros(2, 12, 16)
    sky[:, :4] = 0.9  # the top rows are sky
    geometry = {"depth": depth, "sky": sky, "image": torch.rand(2, 3, 12, 16), "mode": "mono"}
    image = DA3Render.fn(geometry, "depth", "v2_style", False, False)["image"]
    assert image.shape == (2, 3, 12, 16)
    for i in range(2):
        theirs = _v2_numpy(depth[i].double().numpy(), sky[i].numpy())
        assert np.abs(image[i, 0].numpy() - theirs).max() <= 1e-5
    d = depth[0].double().numpy()
    min_max = DA3Render.fn(geometry, "depth", "min_max", False, False)["image"][0, 0].numpy()
    assert np.abs(min_max - (1 - (d - d.min()) / (d.max() - d.min()))).max() <= 1e-5
    clipped = DA3Render.fn(geometry, "depth", "raw", True, False)["image"][0, 0].numpy()
    assert np.allclose(clipped[:4], np.quantile(d[4:], 0.99), atol=1e-5)
    assert np.allclose(clipped[4:], d[4:], atol=1e-6)
    mask = DA3Render.fn(geometry, "sky_mask", "v2_style", False, False)["image"]
    assert torch.equal(mask[:, 1], sky)


def test_any_view_files_are_refused_naming_what_loads(da3_state: dict[str, Any]) -> None:
    from easel.models.depth_anything3 import build
    from easel.models.errors import ModelError

    state = {**da3_state, "cam_dec.fc_t.weight": torch.zeros(3, 8)}
    with pytest.raises(ModelError, match="Mono-Large and Metric-Large"):
        build(state, "depth_anything_3_small.safetensors")


@pytest.mark.slow
@needs_reference
def test_das_own_checkpoint_layout_loads_the_same_network(da3_state: dict[str, Any]) -> None:
    from easel.models.depth_anything3 import build

    original = {"model." + k: v for k, v in da3_files.to_original(da3_state).items()}
    ours, _ = build(da3_state, "comfy")
    theirs, _ = build(original, "original")
    pixels = torch.randn(1, 3, 140, 182, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(ours(pixels)[0], theirs(pixels)[0])


@pytest.mark.skipif(
    importlib.util.find_spec("comfyui_workflow_templates_json") is None,
    reason="the templates corpus is in the dev extra (in CI)",
)
def test_depth_template_runs_end_to_end(
    da3_state: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LoadDA3Model on the file the template names (tiny), DA3Inference at 504 (mono),
    DA3Render depth v2_style, PreviewImage and ImageCompare."""
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input
    from tests.families.workflows import only, template

    da3_files.write(tmp_path, TEMPLATE_FILE, da3_state)
    roots = [tmp_path / "models"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    pixels = (torch.rand(60, 80, 3, generator=torch.Generator().manual_seed(4)) * 255).byte()
    PILImage.fromarray(pixels.numpy(), "RGB").save(tmp_path / "input.png")
    workflow = to_easel(template(TEMPLATE))
    nodes = workflow["nodes"]
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out", keep_values=True)
    assert result.ok, result.failures
    geometry = result.values[only(nodes, "DA3Inference")]["da3_geometry"]
    assert geometry["depth"].shape == geometry["sky"].shape == (1, 60, 80)
    image = result.values[only(nodes, "DA3Render")]["image"]
    assert image.shape == (1, 3, 60, 80)
    theirs = _v2_numpy(geometry["depth"][0].double().numpy(), geometry["sky"][0].numpy())
    assert np.abs(image[0, 0].numpy() - theirs).max() <= 1e-5
    assert float(image.std()) > 0  # a depth map, not a flat image
    assert result.ui  # the preview and the comparison
