"""Setting one input of a workflow dict: `--set NODE.INPUT=VALUE` and sweep items."""

from __future__ import annotations

from typing import Any


class EditError(ValueError):
    """An edit names something the workflow does not have."""


def split_target(target: str) -> tuple[str, str]:
    """`"sample.seed"` -> ("sample", "seed"); node ids may contain dots, inputs may not."""
    node_id, dot, input_name = target.rpartition(".")
    if not dot or not node_id or not input_name:
        raise EditError(f"{target!r}: expected NODE.INPUT")
    return node_id, input_name


def set_input(workflow: dict[str, Any], target: str, value: Any) -> None:
    """Set a literal input in place (lists are wrapped as {"value": [...]})."""
    node_id, input_name = split_target(target)
    nodes = workflow.get("nodes")
    node = nodes.get(node_id) if isinstance(nodes, dict) else None
    if not isinstance(node, dict):
        known = ", ".join(sorted(nodes)) if isinstance(nodes, dict) else "none"
        raise EditError(f"{target!r}: no node {node_id!r} in the workflow (nodes: {known})")
    node.setdefault("inputs", {})[input_name] = (
        {"value": value} if isinstance(value, list) else value
    )
