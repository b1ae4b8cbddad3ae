"""The Mage-Flow templates' int8 ConvRot transformer files: a tiny Mage-Flow transformer
quantised by comfy-kitchen (the library ComfyUI writes and reads them with) in ComfyUI's layout
loads through DiffusionModelLoader as comfy-kitchen's own dequantisation, exactly (slow; needs
the `quantized` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures import mage_family, quantized_files
from tests.fixtures.mage_family import FILES

pytest.importorskip("comfy_kitchen")
pytestmark = pytest.mark.slow

mage_models = mage_family.mage_models


def test_int8_convrot_transformer_loads_comfy_kitchens_dequantisation(
    mage_models: Any, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from easel.models import mage_loading
    from easel.models.manager import ModelManager

    source = mage_models.root / "models" / "diffusion_models" / FILES["transformer"]
    state = load_file(str(source))
    quantised, expected = quantized_files.quantize(state, "int8_convrot")
    assert len(expected) > 10
    folder = tmp_path / "diffusion_models"
    folder.mkdir()
    path = folder / "mage_flow_turbo_int8_convrot.safetensors"
    save_file(quantised, str(path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    module = mage_loading.diffusion_model("q", path, manager).unet
    loaded = module.state_dict()
    prefix = "model.diffusion_model."
    for key, value in state.items():
        want = expected.get(key, value.float())
        assert torch.equal(loaded[key[len(prefix) :]], want), key
