"""Bypassed and muted nodes: the workflow as it runs.

A node's `mode` in the workflow format (ComfyUI's mode 4 and mode 2):

- "bypass": the node does not run; each consumer of one of its outputs receives instead the
  node's first input of the same socket type (a link, followed through further bypassed
  nodes, or that input's literal value). With no such input, the consumer's input is cut.
- "mute": the node does not run and its consumers' inputs from it are cut.

A consumer that loses a required input this way is dropped too, and so on downstream, so
an output node that needs a muted node is not run (ComfyUI does the same).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from easel.core.graph import Workflow
    from easel.core.plugins import Registry

BYPASS = "bypass"
MUTE = "mute"

_CUT: Any = object()  # an input whose source does not run


def effective_workflow(workflow: Workflow, registry: Registry) -> Workflow:
    """The workflow without its bypassed and muted nodes (itself when it has none)."""
    from easel.core.graph import NodeSpec, as_link

    nodes = workflow.nodes
    if not any(spec.mode for spec in nodes.values()):
        return workflow

    def resolve(value: Any, seen: frozenset[str]) -> Any:
        link = as_link(value)
        if link is None:
            return value
        source = nodes.get(link.node)
        if source is None or not source.mode:
            return value  # a missing node is reported by validation
        if source.mode == MUTE or link.node in seen:
            return _CUT
        node_type = registry.get(source.type)
        out_type = node_type.outputs.get(link.output) if node_type else None
        if node_type is None or out_type is None:
            return _CUT
        for name, spec in node_type.inputs.items():
            if spec.type == out_type and name in source.inputs:
                return resolve(source.inputs[name], seen | {link.node})
        return _CUT

    kept: dict[str, NodeSpec] = {}
    cut: dict[str, set[str]] = {}
    for node_id, spec in nodes.items():
        if spec.mode:
            continue
        inputs: dict[str, Any] = {}
        for name, value in spec.inputs.items():
            resolved = resolve(value, frozenset())
            if resolved is _CUT:
                cut.setdefault(node_id, set()).add(name)
            else:
                inputs[name] = resolved
        kept[node_id] = NodeSpec(type=spec.type, inputs=inputs, mode=None)
    _drop_what_needs_cut(kept, cut, registry)
    return workflow.model_copy(update={"nodes": kept})


def _drop_what_needs_cut(
    kept: dict[str, Any], cut: dict[str, set[str]], registry: Registry
) -> None:
    """Remove nodes that lost a required input, then what needs them, until none is left."""
    from easel.core.graph import as_link

    pending = list(cut)
    while pending:
        node_id = pending.pop()
        spec = kept.get(node_id)
        node_type = registry.get(spec.type) if spec else None
        if spec is None or node_type is None:
            continue
        if not any(
            node_type.inputs[name].required for name in cut[node_id] if name in node_type.inputs
        ):
            continue
        del kept[node_id]
        for other_id, other in kept.items():
            for name, value in list(other.inputs.items()):
                link = as_link(value)
                if link is not None and link.node == node_id:
                    del other.inputs[name]
                    cut.setdefault(other_id, set()).add(name)
                    pending.append(other_id)
