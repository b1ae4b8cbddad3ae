"""Flux.2 through CheckpointLoader: ComfyUI's single file holding every part, and a diffusers
Flux2KleinPipeline / Flux2Pipeline folder, give the split files' image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.test_flux2_parity import FILES, PROMPT, image_of, workflow
from tests.fixtures import flux2_family

# Variants of the family's behaviour (samplers, layouts, edge cases): run with --slow.
pytestmark = pytest.mark.slow

flux2_root = flux2_family.flux2_root
flux2_models = flux2_family.flux2_models
flux2_manager = flux2_family.flux2_manager
flux2_env = flux2_family.flux2_env
run_flux2 = flux2_family.run_flux2


def checkpoint_workflow(variant: str, name: str) -> dict[str, Any]:
    """The split-file workflow with CheckpointLoader's model, CLIP and VAE."""
    nodes = workflow(variant, cfg=4.0 if variant == "klein" else 1.0)
    for node in ("unet", "clip", "vae"):
        del nodes[node]
    nodes["ckpt"] = {"type": "CheckpointLoader", "inputs": {"name": name}}
    for node in ("pos", "neg"):
        nodes[node]["inputs"]["clip"] = ["ckpt", "clip"]
    nodes["k"]["inputs"]["model"] = ["ckpt", "model"]
    nodes["dec"]["inputs"]["vae"] = ["ckpt", "vae"]
    return nodes


def test_single_file_with_every_part_gives_the_split_files_image(
    flux2_models: Any, flux2_root: Path, run_flux2: Any
) -> None:
    flux2_family.write_checkpoint(flux2_models["klein"], flux2_root)
    split = image_of(run_flux2(workflow("klein", cfg=4.0), ["dec"]))
    single = image_of(
        run_flux2(checkpoint_workflow("klein", "flux2-klein-all.safetensors"), ["dec"])
    )
    assert float(split.std()) > 0.01
    assert torch.equal(split, single)


@pytest.mark.parametrize("variant", ["klein", "dev"])
def test_diffusers_folder_gives_the_split_files_image(
    variant: str,
    flux2_models: Any,
    flux2_root: Path,
    flux2_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    folder = flux2_root / "diffusers" / f"flux2-{variant}"
    if not folder.is_dir():
        flux2_models[variant].pipe.save_pretrained(str(folder), safe_serialization=True)
    roots = [flux2_root / "diffusers", flux2_root / "models", flux2_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})

    def run(nodes: dict[str, Any]) -> Any:
        workflow_json = {"format": "easel.workflow", "version": 1, "nodes": nodes}
        return image_of(executor.run(workflow_json, targets=["dec"], keep_values=True))

    split = run(workflow(variant, cfg=4.0 if variant == "klein" else 1.0))
    ours = run(checkpoint_workflow(variant, folder.name))
    assert FILES[variant] and PROMPT
    assert float(split.std()) > 0.01
    assert (split - ours).abs().max().item() <= 1e-6
