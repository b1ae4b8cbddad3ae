"""Every bundled workflow names registered nodes (tests/zoo/test_demo_workflows.py runs them
on the shipped weights and checks their images)."""

from __future__ import annotations

from pathlib import Path

from easel.core.plugins import load_plugins
from easel.workflow_files import read_workflow

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))


def test_bundled_workflows_are_well_formed():
    registry = load_plugins(entry_points=False, environ={})
    names = {p.name for p in WORKFLOWS}
    assert {
        "text_to_image.json",
        "unclip_prior.json",
        "cascade_upscale.json",
        "best_of_n_clipscore.json",
        "image_to_image.json",
    } <= names
    for path in WORKFLOWS:
        workflow = read_workflow(path)
        for node_id, node in workflow["nodes"].items():
            assert node["type"] in registry.nodes, (path.name, node_id)
