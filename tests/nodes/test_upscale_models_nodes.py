"""UpscaleModelLoader (ESRGAN-family files and bundle diffusion upscalers) and
ImageUpscaleWithModel, through the node API and the executor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from easel.core.context import Context
from easel.core.node import NodeError
from easel.models.manager import ModelManager
from tests.models.test_upscale_models import compact_layout, models_folder, save, spandrel_reference


@pytest.fixture(scope="module")
def upscale_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models_folder(tmp_path_factory.mktemp("upscale_nodes"))


@pytest.fixture
def models(upscale_root: Path, tiny_models: Any, monkeypatch: pytest.MonkeyPatch) -> ModelManager:
    """A manager over the upscale models and the tiny bundle (which has a diffusion upscaler);
    EASEL_MODELS_DIR names the same folders for the loader's choices."""
    roots = [upscale_root, tiny_models.root]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    return ModelManager(roots, device="cpu", dtype=torch.float32)


def load(models: ModelManager, name: str) -> Any:
    from easel.nodes.upscale_models import UpscaleModelLoader

    ctx = Context(services={"models": models})
    return UpscaleModelLoader.call(ctx, {"name": name})["upscale_model"]


def upscale(handle: Any, image: Any, **options: Any) -> Any:
    from easel.nodes.upscale_models import ImageUpscaleWithModel

    inputs = {"upscale_model": handle, "image": image, "tile": 512, "overlap": 32, **options}
    return ImageUpscaleWithModel.call(Context(), inputs)["image"]


def test_loader_offers_upscale_model_files_and_bundle_upscalers(models: ModelManager) -> None:
    from easel.nodes.upscale_models import UpscaleModelLoader

    assert UpscaleModelLoader.inputs["name"].current_choices() == [
        "4x-esrgan-old.safetensors",
        "RealESRGAN_x2plus.pth",
        "RealESRGAN_x4plus.safetensors",
        "legacy/4x-esrgan-old.pth",
        "realesr-compact-x4.safetensors",
        "easel-shapes",
        "tiny-shapes",
    ]  # easel-shapes: the bundled demo model (always a root)


def test_esrgan_file_upscales_as_spandrel_does(models: ModelManager, upscale_root: Path) -> None:
    handle = load(models, "RealESRGAN_x4plus.safetensors")
    image = torch.rand(1, 3, 10, 14, generator=torch.Generator().manual_seed(0))
    out = upscale(handle, image)
    reference = spandrel_reference(upscale_root / "upscale_models/RealESRGAN_x4plus.safetensors")
    with torch.inference_mode():
        assert torch.equal(out, reference(image))
    assert out.shape == (1, 3, 40, 56)


def test_pickle_file_is_refused_by_the_loader_unless_allowed(models: ModelManager) -> None:
    with pytest.raises(NodeError, match="pickle") as caught:
        load(models, "RealESRGAN_x2plus.pth")
    assert caught.value.input == "name"
    models.allow_unsafe_pickle = True
    assert load(models, "RealESRGAN_x2plus.pth").scale == 2


def test_bundle_upscaler_loads_for_model_upscale(models: ModelManager) -> None:
    from easel.nodes.upscale import ModelUpscale

    handle = load(models, "tiny-shapes")
    image = torch.rand(1, 3, 8, 8)
    out = ModelUpscale.call(
        Context(), {"upscale_model": handle, "image": image, "seed": 0, "steps": 2}
    )["image"]
    assert out.shape == (1, 3, 16, 16)


def test_each_upscale_node_refuses_the_others_model(models: ModelManager) -> None:
    from easel.nodes.upscale import ModelUpscale

    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(NodeError, match="diffusion upscaler: run it with ModelUpscale") as a:
        upscale(load(models, "tiny-shapes"), image)
    assert a.value.input == "upscale_model"
    with pytest.raises(NodeError, match="run it with ImageUpscaleWithModel") as b:
        ModelUpscale.call(
            Context(),
            {
                "upscale_model": load(models, "4x-esrgan-old.safetensors"),
                "image": image,
                "seed": 0,
                "steps": 2,
            },
        )
    assert b.value.input == "upscale_model"


def test_missing_name_lists_where_it_looked_and_the_bundles(models: ModelManager) -> None:
    with pytest.raises(
        NodeError,
        match=r"no upscale_models model named '4x-nope.pth'.*"
        r"Looked in: .*Bundles with a diffusion upscaler: "
        r"tiny-shapes",
    ) as caught:
        load(models, "4x-nope.pth")
    assert caught.value.input == "name"


def test_missing_spandrel_is_a_node_error_saying_how_to_install(
    models: ModelManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "spandrel", None)
    with pytest.raises(NodeError, match=r"pip install .*\[upscale\]") as caught:
        load(models, "4x-esrgan-old.safetensors")
    assert caught.value.input == "name"


def test_overlap_larger_than_half_the_tile_is_refused(models: ModelManager) -> None:
    handle = load(models, "realesr-compact-x4.safetensors")
    with pytest.raises(NodeError, match="overlap 40 is more than half the tile") as caught:
        upscale(handle, torch.rand(1, 3, 8, 8), tile=64, overlap=40)
    assert caught.value.input == "overlap"


def test_a_result_over_the_pixel_budget_is_refused_before_running(models: ModelManager) -> None:
    from easel.core.budget import Budget
    from easel.nodes.upscale_models import ImageUpscaleWithModel

    handle = load(models, "realesr-compact-x4.safetensors")
    ctx = Context(services={"budget": Budget(32 * 32)})
    inputs = {"upscale_model": handle, "image": torch.rand(1, 3, 8, 10), "tile": 512, "overlap": 32}
    with pytest.raises(NodeError, match=r"the 4x result: 40x32 is 1,280 pixels") as caught:
        ImageUpscaleWithModel.call(ctx, inputs)
    assert caught.value.input == "image"
    inputs["image"] = torch.rand(1, 3, 8, 8)
    assert ImageUpscaleWithModel.call(ctx, inputs)["image"].shape == (1, 3, 32, 32)


def test_wrong_channels_name_the_image_input(models: ModelManager) -> None:
    handle = load(models, "realesr-compact-x4.safetensors")
    with pytest.raises(NodeError, match="takes 3-channel images") as caught:
        upscale(handle, torch.rand(1, 1, 8, 8))
    assert caught.value.input == "image"


def _workflow(image_path: Path) -> dict[str, Any]:
    return {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {
            "img": {"type": "LoadImage", "inputs": {"image": str(image_path)}},
            "model": {"type": "UpscaleModelLoader", "inputs": {"name": "compact.safetensors"}},
            "up": {
                "type": "ImageUpscaleWithModel",
                "inputs": {
                    "upscale_model": ["model", "upscale_model"],
                    "image": ["img", "image"],
                    "tile": 24,
                    "overlap": 12,
                },
            },
        },
    }


def test_workflow_runs_tiled_with_progress_per_tile_and_reloads_a_replaced_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image as PILImage

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.nodes.image_io import image_to_tensor

    path = save(compact_layout(), tmp_path / "models" / "upscale_models" / "compact.safetensors")
    models = ModelManager([tmp_path / "models"], device="cpu", dtype=torch.float32)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path / "models"))  # the loader's choices
    pixels = (torch.rand(40, 24, 3, generator=torch.Generator().manual_seed(1)) * 255).byte()
    image_path = tmp_path / "in.png"
    PILImage.fromarray(pixels.numpy()).save(image_path)
    executor = Executor(load_plugins(entry_points=False), services={"models": models})
    events: list[Any] = []
    result = executor.run(
        _workflow(image_path), targets=["up"], keep_values=True, on_event=events.append
    )
    assert result.status == "succeeded", result.failures
    progress = [
        (e.data["step"], e.data["total"])
        for e in events
        if e.type == "node_progress" and e.node_id == "up"
    ]
    assert progress == [(1, 3), (2, 3), (3, 3)]  # 40 rows in 24-px tiles overlapping by 12
    out = result.values["up"]["image"]
    with PILImage.open(image_path) as picture:
        image = image_to_tensor(picture.convert("RGB"))
    whole = upscale(result.values["model"]["upscale_model"], image, tile=0)
    assert out.shape == (1, 3, 160, 96)
    # Compact's receptive field (3 px) fits the discarded quarter of the overlap: no change.
    assert float((out - whole).abs().max()) <= 1e-5

    # Same inputs: all cache hits. A replaced model file: the loader and the upscale rerun.
    cached = executor.run(_workflow(image_path), targets=["up"]).cached
    assert sorted(cached) == ["img", "model", "up"]
    save(compact_layout(seed=9), path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = executor.run(_workflow(image_path), targets=["up"], keep_values=True)
    assert sorted(again.executed) == ["model", "up"]
    assert not torch.equal(again.values["up"]["image"], out)
