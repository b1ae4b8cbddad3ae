"""The MiniMax H3 template's int8 ConvRot DiT file: a tiny pruned MiniMax H3 DiT quantised by
comfy-kitchen (the library ComfyUI writes and reads them with) in ComfyUI's layout loads through
DiffusionModelLoader as comfy-kitchen's own dequantisation, exactly (slow; needs the
`quantized` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures import minimax_family, quantized_files
from tests.fixtures.minimax_family import FILES

pytest.importorskip("comfy_kitchen")
pytestmark = pytest.mark.slow

minimax_models = minimax_family.minimax_models


def test_int8_convrot_dit_loads_comfy_kitchens_dequantisation(
    minimax_models: Any, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from easel.models import minimax_loading, minimax_transformer
    from easel.models.manager import ModelManager

    source = minimax_models.root / "models" / "diffusion_models" / FILES["pruned"]
    state = load_file(str(source))
    quantised, expected = quantized_files.quantize(state, "int8_convrot")
    assert len(expected) > 10
    folder = tmp_path / "diffusion_models"
    folder.mkdir()
    path = folder / "minimax_h3_fl2va_pruned_int8_convrot.safetensors"
    save_file(quantised, str(path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    loaded = minimax_loading.diffusion_model("q", path, manager).unet.state_dict()
    prefix = "model.diffusion_model."
    dequantised = {k[len(prefix) :]: expected.get(k, v.float()) for k, v in state.items()}
    want = minimax_transformer.build(dequantised, torch.float32).state_dict()
    assert set(loaded) == set(want)
    for key, value in want.items():
        assert torch.equal(loaded[key], value), key
