"""Fixtures for the ComfyUI import tests: the real ComfyUI files and a registry to validate on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from easel.core.plugins import Registry, load_plugins
from tests.comfy import contract_nodes
from tests.fixtures.tiny_models import tiny_env, tiny_models  # noqa: F401 - fixtures

DATA = Path(__file__).parent / "data"
# CI clones the repository with shared/ beside it.
SHARED_COMFY = Path(__file__).resolve().parents[2].parent / "shared" / "comfy_workflows"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def real_comfy_files() -> list[Path]:
    files = sorted(SHARED_COMFY.glob("*.json"))
    assert files, f"the real ComfyUI workflows are missing: expected them in {SHARED_COMFY}"
    return files


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The built-in nodes, plus contract stand-ins for nodes not written yet (or written
    without a contracted input or output so far)."""
    loaded = load_plugins(entry_points=False)
    assert not loaded.errors, loaded.errors
    for node_type in contract_nodes.NODES:
        for kind in [*(s.type for s in node_type.inputs.values()), *node_type.outputs.values()]:
            loaded.socket_types.setdefault(kind, "contract-stand-ins")
        real = loaded.get(node_type.type)
        if real is None or not (
            set(node_type.inputs) <= set(real.inputs)
            and set(node_type.outputs) <= set(real.outputs)
        ):
            loaded.nodes.pop(node_type.type, None)
            loaded.add_node("contract-stand-ins", node_type)
    return loaded
