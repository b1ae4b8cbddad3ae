"""Generic layers find checkpoint and upload inputs from node declarations, not names."""

from __future__ import annotations

from typing import Any

import easel
from easel.core.plugins import load_plugins
from easel.core.roles import checkpoint_inputs, upload_inputs
from easel.core.types import Clip, Model, Vae


@easel.node(outputs={"model": Model, "clip": Clip, "vae": Vae})
def MyLoader(ckpt_name: str = easel.Input("a", choices=["a", "b"]), weight: float = 1.0) -> Any:
    return None


@easel.node(outputs={"model": Model})
def UnetOnly(unet_name: str = easel.Input("u", choices=["u"])) -> Any:
    return None


def test_checkpoint_and_upload_inputs_come_from_the_declarations():
    registry = load_plugins(entry_points=False, environ={})
    registry.add_node("mine", MyLoader)
    registry.add_node("mine", UnetOnly)
    workflow = {
        "nodes": {
            "builtin": {"type": "CheckpointLoader", "inputs": {"name": "x"}},
            "plugin": {"type": "MyLoader"},
            "unet": {"type": "UnetOnly"},  # a MODEL alone is not a checkpoint
            "image": {"type": "LoadImage", "inputs": {"image": "cat.png"}},
            "unknown": {"type": "Nope"},
            "broken": "not a node",
        }
    }
    assert checkpoint_inputs(workflow, registry) == [("builtin", "name"), ("plugin", "ckpt_name")]
    assert upload_inputs(workflow, registry) == [("image", "image")]
    assert checkpoint_inputs({"nodes": []}, registry) == []
