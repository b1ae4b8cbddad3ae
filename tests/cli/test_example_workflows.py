"""Every bundled workflow validates, and the demo-model ones run end to end on the tiny
model family (the same graphs with the model names swapped and fewer steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from easel.core.plugins import load_plugins
from easel.workflow_files import read_workflow
from tests.fixtures.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
DEMO = "easel-shapes"


def test_bundled_workflows_are_well_formed():
    registry = load_plugins(entry_points=False, environ={})
    names = {p.name for p in WORKFLOWS}
    assert {"text_to_image.json", "unclip_prior.json", "cascade_upscale.json",
            "best_of_n_clipscore.json", "image_to_image.json"} <= names
    for path in WORKFLOWS:
        workflow = read_workflow(path)
        for node_id, node in workflow["nodes"].items():
            assert node["type"] in registry.nodes, (path.name, node_id)


def on_tiny_models(workflow: dict, tiny: TinyModels) -> dict:
    for node in workflow["nodes"].values():
        name = node["inputs"].get("name")
        if isinstance(name, str) and name.startswith(DEMO):
            node["inputs"]["name"] = tiny.name + name[len(DEMO):]
        if "steps" in node["inputs"]:
            node["inputs"]["steps"] = 2
        if node["type"] == "EmptyLatent":
            node["inputs"].update(width=16, height=16)
        if node["type"] == "RenderShapes":
            node["inputs"]["size"] = 16
    return workflow


@pytest.mark.parametrize("name", ["unclip_prior.json", "cascade_upscale.json",
                                  "best_of_n_clipscore.json", "image_to_image.json"])
def test_demo_workflows_run_on_the_tiny_family(name, tiny_models, tmp_path):
    workflow = on_tiny_models(read_workflow(ROOT / "workflows" / name), tiny_models)
    path = tmp_path / name
    path.write_text(json.dumps(workflow))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EASEL_MODELS_DIR": str(tiny_models.root),
           "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "easel", "run", str(path), "--json",
                             "--output-dir", str(tmp_path / "out")], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    [image] = report["files"]
    assert Path(image).is_file()
    if name == "best_of_n_clipscore.json":
        [score] = report["ui"]["score"]["clip_scores"]
        assert 0.0 <= score <= 100.0
