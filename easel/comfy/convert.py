"""`to_easel(data)`: a ComfyUI workflow (API or UI format) as an Easel workflow dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.comfy.api_format import convert_prompt
from easel.comfy.mapping import NodeMap, merged_node_maps
from easel.comfy.ui_format import ui_to_prompt
from easel.core.graph import Problem, WorkflowError


def comfy_format(data: Any) -> str | None:
    """ "ui" or "api" for a ComfyUI workflow dict, else None."""
    if not isinstance(data, Mapping) or not data:
        return None
    if isinstance(data.get("nodes"), list) and "links" in data:
        return "ui"
    if all(isinstance(v, Mapping) and "class_type" in v for v in data.values()):
        return "api"
    return None


def to_easel(data: Any, extra_maps: Mapping[str, NodeMap] | None = None) -> dict[str, Any]:
    """Convert a ComfyUI workflow; raise one WorkflowError listing everything that cannot be.

    `extra_maps` adds mappings for plugin nodes (see `mapping.merged_node_maps`)."""
    try:
        node_maps = merged_node_maps(extra_maps)
    except ValueError as exc:
        raise WorkflowError([Problem(f"a plugin's ComfyUI mapping is refused: {exc}")]) from None
    kind = comfy_format(data)
    if kind == "api":
        return convert_prompt(data, node_maps=node_maps)
    if kind == "ui":
        prompt, editor, problems = ui_to_prompt(data, node_maps)
        return convert_prompt(prompt, editor, problems, node_maps)
    raise WorkflowError(
        [
            Problem(
                'not a ComfyUI workflow: expected the API format ({id: {"class_type": ..., '
                '"inputs": ...}}) or the UI format ({"nodes": [...], "links": [...]})'
            )
        ]
    )


def set_checkpoint(workflow: dict[str, Any], name: str) -> list[str]:
    """Make every CheckpointLoader of an Easel workflow dict load `name`; returns their ids."""
    changed = []
    for node_id, node in (workflow.get("nodes") or {}).items():
        if isinstance(node, dict) and node.get("type") == "CheckpointLoader":
            node.setdefault("inputs", {})["name"] = name
            changed.append(node_id)
    return changed
