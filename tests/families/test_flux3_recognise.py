"""Flux 3 files are told apart from the other families by their keys, sized off their shapes,
and the files Easel does not read (integer weights without ComfyUI's quantisation marker, a
quantised file without the `quantized` extra, the Qwen3.5 prompt upsampler) are refused with
errors naming them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures import quantized_files
from tests.fixtures.flux3_family import _transformer, transformer_file


@pytest.fixture(scope="module")
def distilled_state() -> dict[str, Any]:
    torch.manual_seed(0)
    return transformer_file(_transformer(True))


def test_recognised_and_sized_from_the_file(distilled_state: dict[str, Any]) -> None:
    from easel.models import family_files
    from easel.models.families import flux2, flux3
    from easel.models.family_files import Shape

    header = {k: Shape(tuple(v.shape)) for k, v in distilled_state.items()}
    family, _ = flux3.recognise(header) or (None, ())
    assert family is flux3.FLUX3_DISTILLED
    base = {k: v for k, v in header.items() if "ref_time_in" not in k}
    assert (flux3.recognise(base) or (None,))[0] is flux3.FLUX3
    assert flux2.recognise(header) is None  # no other family claims it
    modules = [m for m in family_files.DIFFUSION_MODELS if "flux3" in m]
    assert modules == ["easel.models.flux3_loading"]
    config = flux3.transformer_config(header)
    assert config["flow_map"] and config["num_layers"] == 1 and config["num_single_layers"] == 2
    assert config["axes_dims_rope"] == [4, 4, 4, 4] and config["joint_attention_dim"] == 256


def test_integer_weights_are_refused_naming_the_file(
    distilled_state: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Integer weights with no `.comfy_quant` marker (no format Easel could read them by) fail
    at DiffusionModelLoader's load with the file's name, not a traceback from inside the model;
    ComfyUI's marked int8 file without comfy-kitchen names the format and the extra."""
    from safetensors.torch import save_file

    from easel.models import family_files
    from easel.models.errors import ModelError
    from easel.models.manager import ModelManager

    state = dict(distilled_state)
    key = "model.diffusion_model.single_blocks.0.q_proj.weight"
    state[key] = state[key].to(torch.int8)
    path = tmp_path / "flux3-image-klein-int8-convrot.safetensors"
    save_file(state, str(path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    with pytest.raises(ModelError) as caught:
        family_files.diffusion_model(path.name, path, manager).unet  # noqa: B018
    assert path.name in str(caught.value) and "integer-quantised" in str(caught.value)

    marked = tmp_path / "flux3-image-klein-int8.safetensors"
    save_file(quantized_files.int8_by_hand(distilled_state, key), str(marked))
    quantized_files.without_comfy_kitchen(monkeypatch)
    with pytest.raises(ModelError) as caught:
        family_files.diffusion_model(marked.name, marked, manager).unet  # noqa: B018
    message = str(caught.value)
    assert marked.name in message and "int8_tensorwise" in message
    assert "pip install 'easel[quantized]'" in message


def test_the_prompt_upsampler_is_refused_naming_the_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from easel.models import family_files
    from easel.models.errors import ModelError
    from easel.models.manager import ModelManager

    path = tmp_path / "qwen3.5_9b_flux3_prompt_upsampler_w4a8.safetensors"
    save_file({"model.layers.0.linear_attn.in_proj_qkvz.weight": torch.zeros(4, 4)}, str(path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    with pytest.raises(ModelError) as caught:
        family_files.load_clip("flux3", path.name, [path], manager)
    assert path.name in str(caught.value) and "prompt upsampler" in str(caught.value)
