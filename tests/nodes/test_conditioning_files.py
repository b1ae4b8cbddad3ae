"""ConditioningLoader and SaveConditioning read and write ComfyUI's conditioning file (its
comfy_extras/nodes_cond.py layout): the tensor `conditioning`, other tensors as options, lists
as `name.0`, `name.1`, ..., plain options as JSON under the metadata key
`conditioning_options`; files from before that metadata hold tensors only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file


def _run(root: Path, nodes: dict[str, Any], output: Path) -> Any:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    manager = ModelManager([root], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    return executor.run(workflow, targets=list(nodes), output_dir=output, keep_values=True)


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "models" / "embeddings").mkdir(parents=True)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path / "models"))  # the names offered
    return tmp_path / "models"


def _load(name: str) -> dict[str, Any]:
    return {"load": {"type": "ConditioningLoader", "inputs": {"conditioning_name": name}}}


def test_comfyui_file_loads_with_its_options(models: Path, tmp_path: Path) -> None:
    embeds = torch.randn(1, 7, 16, dtype=torch.bfloat16)
    pooled = torch.randn(1, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    references = [torch.randn(1, 16, 4, 4), torch.randn(1, 16, 2, 6)]
    save_file(
        {
            "conditioning": embeds,
            "pooled_output": pooled,
            "attention_mask": mask,
            "reference_latents.1": references[1],
            "reference_latents.0": references[0],
        },
        str(models / "embeddings" / "task.safetensors"),
        metadata={"conditioning_options": json.dumps({"guidance": 3.5})},
    )
    result = _run(models, _load("task.safetensors"), tmp_path / "out")
    assert result.ok, result.failures
    cond = result.values["load"]["conditioning"]
    assert sorted(cond) == ["attention_mask", "embeds", "guidance", "pooled", "reference_latents"]
    assert cond["embeds"].dtype == torch.float32 and torch.equal(cond["embeds"], embeds.float())
    assert torch.equal(cond["pooled"], pooled)
    assert torch.equal(cond["attention_mask"], mask)  # integer tensors keep their type
    assert cond["guidance"] == 3.5
    assert [r.shape for r in cond["reference_latents"]] == [r.shape for r in references]
    pairs = zip(cond["reference_latents"], references, strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_file_without_metadata_and_unknown_options(models: Path, tmp_path: Path) -> None:
    """ComfyUI's first ConditioningLoader files (tensors only) load; an option Easel has no key
    for, and a file with no `conditioning` tensor (a textual-inversion embedding), are refused
    on conditioning_name, naming what is wrong."""
    folder = models / "embeddings"
    save_file({"conditioning": torch.randn(1, 3, 16)}, str(folder / "old.safetensors"))
    save_file(
        {"conditioning": torch.randn(1, 3, 16), "cross_attn_controlnet": torch.randn(1, 3, 16)},
        str(folder / "extra.safetensors"),
    )
    save_file({"emb_params": torch.randn(2, 16)}, str(folder / "style.safetensors"))
    nodes = {
        "old": _load("old.safetensors")["load"],
        "extra": _load("extra.safetensors")["load"],
        "style": _load("style.safetensors")["load"],
    }
    result = _run(models, nodes, tmp_path / "out")
    assert sorted(result.values["old"]["conditioning"]) == ["embeds"]
    failures = {f.node: f for f in result.failures}
    assert sorted(failures) == ["extra", "style"]
    assert failures["extra"].input == "conditioning_name"
    assert "cross_attn_controlnet" in failures["extra"].message
    assert "no 'conditioning' tensor" in failures["style"].message
    assert "emb_params" in failures["style"].message


def test_saved_conditioning_is_comfyuis_file_and_loads_back(models: Path, tmp_path: Path) -> None:
    embeds, pooled = torch.randn(1, 4, 16), torch.randn(1, 8)
    references = [torch.randn(1, 16, 2, 2)]
    save_file(
        {"conditioning": embeds, "pooled_output": pooled, "reference_latents.0": references[0]},
        str(models / "embeddings" / "in.safetensors"),
        metadata={"conditioning_options": json.dumps({"guidance": 2.5})},
    )
    nodes = {
        **_load("in.safetensors"),
        "save": {
            "type": "SaveConditioning",
            "inputs": {"conditioning": ["load", "conditioning"], "filename_prefix": "cond/x"},
        },
    }
    out = tmp_path / "out"
    result = _run(models, nodes, out)
    assert result.ok, result.failures
    assert result.ui["save"]["files"] == ["cond/x_00001_.safetensors"]
    with safe_open(str(out / "cond" / "x_00001_.safetensors"), framework="pt") as file:
        names = file.keys()
        assert sorted(names) == ["conditioning", "pooled_output", "reference_latents.0"]
        assert json.loads(file.metadata()["conditioning_options"]) == {"guidance": 2.5}
        assert torch.equal(file.get_tensor("conditioning"), embeds)
    # a second save takes the next number; the file reads back as the same conditioning
    again = _run(models, nodes, out)
    assert again.ui["save"]["files"] == ["cond/x_00002_.safetensors"]
    (models / "embeddings" / "back.safetensors").write_bytes(
        (out / "cond" / "x_00001_.safetensors").read_bytes()
    )
    back = _run(models, _load("back.safetensors"), tmp_path / "out2")
    cond = back.values["load"]["conditioning"]
    assert torch.equal(cond["embeds"], embeds) and torch.equal(cond["pooled"], pooled)
    assert cond["guidance"] == 2.5 and torch.equal(cond["reference_latents"][0], references[0])


def test_save_refuses_what_comfyuis_file_cannot_hold(models: Path, tmp_path: Path) -> None:
    """Easel's default negative is not saved; a key ComfyUI's file has no place for (SDXL's
    size conditioning, a ControlNet chain) is refused naming it."""
    from easel.nodes.conditioning_files import conditioning_file

    tensors, metadata = conditioning_file(
        {"embeds": torch.zeros(1, 2, 4), "uncond": {"embeds": torch.zeros(1, 2, 4)}}
    )
    assert sorted(tensors) == ["conditioning"]
    assert json.loads(metadata["conditioning_options"]) == {}
    with pytest.raises(ValueError, match="'sdxl'"):
        conditioning_file({"embeds": torch.zeros(1, 2, 4), "sdxl": torch.zeros(1, 6)})
