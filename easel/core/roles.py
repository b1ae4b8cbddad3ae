"""What generic layers (CLI, batches, server) ask of a workflow's nodes, derived from the
node types' declarations rather than their names.

- A *checkpoint input* is a string input with choices (model names) on a node whose outputs
  give a whole checkpoint: a MODEL, a CLIP and a VAE. `--checkpoint NAME` sets these.
- An *upload input* is an input drawn with the `image_upload` widget: it names a file in
  the server's input folder.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from easel.core.node import NodeType
from easel.core.plugins import Registry
from easel.core.types import STRING

CHECKPOINT_OUTPUTS = frozenset({"MODEL", "CLIP", "VAE"})
UPLOAD_WIDGET = "image_upload"


def checkpoint_inputs_of(node_type: NodeType) -> list[str]:
    if not set(node_type.outputs.values()) >= CHECKPOINT_OUTPUTS:
        return []
    return [
        name
        for name, spec in node_type.inputs.items()
        if spec.type == STRING and spec.info.choices is not None
    ]


def upload_inputs_of(node_type: NodeType) -> list[str]:
    return [name for name, spec in node_type.inputs.items() if spec.info.widget == UPLOAD_WIDGET]


def _inputs(
    workflow: Mapping[str, Any], registry: Registry, which: Any
) -> Iterator[tuple[str, str]]:
    nodes = workflow.get("nodes")
    if not isinstance(nodes, Mapping):
        return
    for node_id, spec in nodes.items():
        type_name = spec.get("type") if isinstance(spec, Mapping) else None
        node_type = registry.get(type_name) if isinstance(type_name, str) else None
        if node_type is not None:
            for name in which(node_type):
                yield node_id, name


def checkpoint_inputs(workflow: Mapping[str, Any], registry: Registry) -> list[tuple[str, str]]:
    """(node id, input) of every checkpoint input in a workflow's JSON."""
    return list(_inputs(workflow, registry, checkpoint_inputs_of))


def upload_inputs(workflow: Mapping[str, Any], registry: Registry) -> list[tuple[str, str]]:
    """(node id, input) of every uploaded-file input in a workflow's JSON."""
    return list(_inputs(workflow, registry, upload_inputs_of))
