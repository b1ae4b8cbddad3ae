"""Fixtures: tiny Stable Diffusion family models in both layouts, a models folder holding
only the single files (and a ComfyUI install for the tokenizer), and an executor over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sd_family import Built, build, write_comfy_tokenizer


@pytest.fixture(scope="session")
def sd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder: checkpoints/<family>.safetensors only, plus a ComfyUI install beside
    it that provides the CLIP tokenizer."""
    root = tmp_path_factory.mktemp("sd-family")
    write_comfy_tokenizer(root / "ComfyUI")
    return root


@pytest.fixture(scope="session")
def sd_models(sd_root: Path) -> Any:
    """`sd_models(family)` builds (once) and returns that family's Built."""
    built: dict[str, Built] = {}

    def get(family: str) -> Built:
        if family not in built:
            built[family] = build(family, sd_root)
        return built[family]

    return get


@pytest.fixture(scope="session")
def sd_manager(sd_root: Path) -> Any:
    import torch

    from easel.models.manager import ModelManager

    return ModelManager(
        [sd_root / "models", sd_root / "ComfyUI"], device="cpu", dtype=torch.float32
    )


@pytest.fixture
def run_sd(sd_manager: Any, sd_root: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a workflow's `nodes` on the single-file models; returns the RunResult. The models
    folder is also EASEL_MODELS_DIR, which the loaders' choices list."""
    import os

    monkeypatch.setenv(
        "EASEL_MODELS_DIR",
        os.pathsep.join(str(p) for p in (sd_root / "models", sd_root / "ComfyUI")),
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins

    executor = Executor(load_plugins(entry_points=False), services={"models": sd_manager})

    def run(nodes: dict[str, Any], targets: list[str]) -> Any:
        workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
        return executor.run(workflow, targets=targets, keep_values=True)

    return run
