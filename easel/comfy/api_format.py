"""ComfyUI's API ("prompt") format, `{id: {"class_type", "inputs"}}`, to an Easel workflow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from easel.comfy.mapping import NODE_MAPS, UNSUPPORTED, NodeMap
from easel.core.graph import FORMAT, VERSION, Problem, WorkflowError

COLUMN_WIDTH, ROW_HEIGHT = 340, 240


class SlotLink(NamedTuple):
    """A ComfyUI link: output slot `slot` of node `node`."""

    node: str
    slot: int


def as_slot_link(value: Any) -> SlotLink | None:
    """The link a ComfyUI input value stands for (`["4", 0]`), if it is one."""
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    ):
        return SlotLink(str(value[0]), value[1])
    return None


@dataclass
class EditorData:
    """What the editor keeps about a graph: titles, positions, notes, groups (never affects a
    run)."""

    titles: dict[str, str] = field(default_factory=dict)
    positions: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)


def node_sort_key(node_id: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order, then the others by name."""
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)


def convert_prompt(
    prompt: Mapping[str, Any],
    editor: EditorData | None = None,
    problems: list[Problem] | None = None,
    node_maps: Mapping[str, NodeMap] = NODE_MAPS,
) -> dict[str, Any]:
    """Convert an API-format prompt; raise one WorkflowError listing every problem."""
    editor = editor or EditorData()
    problems = list(problems or [])
    entries: dict[str, tuple[str, NodeMap, Mapping[str, Any]]] = {}
    unsupported: list[tuple[str, str]] = []
    # Nodes with a problem of their own (the UI format's included): links to them say nothing.
    reported: set[str] = {p.node for p in problems if p.node is not None}
    for raw_id, entry in prompt.items():
        node_id = str(raw_id)
        class_type = entry.get("class_type") if isinstance(entry, Mapping) else None
        if not isinstance(class_type, str):
            problems.append(
                Problem(
                    "not a ComfyUI node: expected an object with 'class_type' and 'inputs'",
                    node=node_id,
                )
            )
            reported.add(node_id)
            continue
        spec = node_maps.get(class_type)
        if spec is None:
            unsupported.append((node_id, class_type))
            reported.add(node_id)
            continue
        entries[node_id] = (class_type, spec, entry)
        meta = entry.get("_meta")
        title = meta.get("title") if isinstance(meta, Mapping) else None
        if isinstance(title, str) and title and node_id not in editor.titles:
            editor.titles[node_id] = title

    nodes: dict[str, dict[str, Any]] = {}
    aliases: dict[str, SlotLink | None] = {}
    constants: dict[str, dict[str, Any]] = {}
    for node_id, (class_type, spec, entry) in entries.items():
        inputs, passthrough = _map_inputs(node_id, class_type, spec, entry, problems)
        if passthrough is not None:
            aliases[node_id] = passthrough[1]
            continue
        nodes[node_id] = {"type": spec.easel_type, "inputs": inputs}
        for name in spec.any_inputs & inputs.keys():
            constant = _constant_node(inputs[name])
            if constant is not None:
                constant_id = f"{node_id}:{name}"
                constants[constant_id] = constant
                inputs[name] = [constant_id, "value"]

    for node_id, node in nodes.items():
        class_type, spec, _ = entries[node_id]
        comfy_names = {easel: comfy for comfy, easel in spec.inputs.items()}
        for name, value in list(node["inputs"].items()):
            if not isinstance(value, SlotLink):
                continue
            link = _resolve(value, aliases)
            if link is None:
                del node["inputs"][name]  # fed by a node that passes nothing through
                continue
            target = _link_target(link, entries, reported)
            if isinstance(target, str):
                problems.append(
                    Problem(
                        target,
                        node=node_id,
                        input=comfy_names.get(name, name),
                        node_type=class_type,
                    )
                )
                del node["inputs"][name]
            elif target is not None:
                node["inputs"][name] = target

    nodes.update(constants)  # after the link pass: their links are Easel links already
    for node_id, class_type in unsupported:
        reason = UNSUPPORTED.get(
            class_type, f"ComfyUI node type {class_type!r} has no Easel equivalent"
        )
        problems.append(Problem(reason, node=node_id, node_type=class_type))
    if unsupported:
        problems.append(
            Problem("the ComfyUI node types Easel converts are: " + ", ".join(sorted(node_maps)))
        )
    if problems:
        raise WorkflowError(problems)

    ordered = {node_id: nodes[node_id] for node_id in sorted(nodes, key=node_sort_key)}
    ui: dict[str, Any] = {"source": "comfyui"}
    positions = {k: v for k, v in editor.positions.items() if k in ordered}
    ui["positions"] = positions or layered_layout(ordered)
    titles = {k: v for k, v in editor.titles.items() if k in ordered}
    if titles:
        ui["titles"] = titles
    if editor.notes:
        ui["notes"] = editor.notes
    if editor.groups:
        ui["groups"] = [
            {**group, "nodes": [n for n in group["nodes"] if n in ordered]}
            for group in editor.groups
        ]
    return {"format": FORMAT, "version": VERSION, "nodes": ordered, "ui": ui}


def _map_inputs(
    node_id: str, class_type: str, spec: NodeMap, entry: Mapping[str, Any], problems: list[Problem]
) -> tuple[dict[str, Any], tuple[str, SlotLink | None] | None]:
    """Easel inputs of one node, and (input, source) when the node only passes a value on."""
    raw = entry.get("inputs") or {}
    if not isinstance(raw, Mapping):
        problems.append(Problem("'inputs' must be an object", node=node_id, node_type=class_type))
        return {}, None
    inputs: dict[str, Any] = {}
    for comfy_name, value in raw.items():
        if comfy_name == "control_after_generate" or comfy_name in spec.ignored:
            continue  # editor state or upload widgets: not inputs of the backend
        name = spec.inputs.get(comfy_name)
        if name is None:
            known = ", ".join(spec.inputs)
            problems.append(
                Problem(
                    f"input {comfy_name!r} of ComfyUI {class_type} is not "
                    f"understood by the converter (known: {known})",
                    node=node_id,
                    input=comfy_name,
                    node_type=class_type,
                )
            )
            continue
        link = as_slot_link(value)
        if link is not None:
            inputs[name] = link
            continue
        if isinstance(value, Mapping) and set(value) == {"__value__"}:
            value = value["__value__"]  # ComfyUI's frontend boxes literal lists this way
        renames = spec.values.get(name)
        if renames is not None and isinstance(value, str):
            if value in renames:
                value = renames[value]
            elif name in spec.strict_values:
                choices = ", ".join(sorted(renames))
                problems.append(
                    Problem(
                        f"{value!r} has no Easel equivalent (convertible: {choices})",
                        node=node_id,
                        input=comfy_name,
                        node_type=class_type,
                    )
                )
                continue
        if isinstance(value, list | dict):
            value = {"value": value}  # Easel's spelling of a literal list or object
        inputs[name] = value
    if spec.adapt is None:
        return inputs, None
    adapted = spec.adapt(inputs)
    for input_name, reason in adapted.problems:
        problems.append(Problem(reason, node=node_id, input=input_name, node_type=class_type))
    if adapted.passthrough is not None:
        source = adapted.inputs.get(adapted.passthrough)
        return {}, (adapted.passthrough, source if isinstance(source, SlotLink) else None)
    return adapted.inputs, None


# The Easel node that holds a literal of each type (ComfyUI's Primitive* nodes map to them).
_CONSTANT_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "Boolean"),
    (int, "Int"),
    (float, "Float"),
    (str, "String"),
)


def _constant_node(value: Any) -> dict[str, Any] | None:
    """A constant node giving `value` to an any-typed input, which takes only links; None for
    a link or a value no constant node holds (validation then names the input)."""
    for python_type, easel_type in _CONSTANT_TYPES:
        if isinstance(value, python_type):
            return {"type": easel_type, "inputs": {"value": value}}
    return None


def _resolve(link: SlotLink, aliases: Mapping[str, SlotLink | None]) -> SlotLink | None:
    """Follow nodes that only pass their input on, to the node that computes the value."""
    seen: set[str] = set()
    current: SlotLink | None = link
    while current is not None and current.node in aliases and current.node not in seen:
        seen.add(current.node)
        current = aliases[current.node]
    return current


def _link_target(
    link: SlotLink, entries: Mapping[str, tuple[str, NodeMap, Any]], reported: set[str]
) -> list[str] | str | None:
    """`[node_id, output_name]`, a reason the link cannot convert, or None (reported already)."""
    if link.node in entries:
        class_type, spec, _ = entries[link.node]
        if 0 <= link.slot < len(spec.outputs) and spec.outputs[link.slot] is not None:
            return [link.node, str(spec.outputs[link.slot])]
        return (
            f"links to output slot {link.slot} of node {link.node!r} ({class_type}), "
            "which has no Easel equivalent"
        )
    if link.node in reported:
        return None
    return f"links to node {link.node!r}, which is not in the workflow"


def layered_layout(nodes: Mapping[str, Mapping[str, Any]]) -> dict[str, list[float]]:
    """Editor positions for a graph that has none: one column per distance from the sources."""
    depth: dict[str, int] = {}

    def depth_of(node_id: str, trail: frozenset[str]) -> int:
        if node_id in depth:
            return depth[node_id]
        sources = [
            value[0]
            for value in nodes[node_id]["inputs"].values()
            if isinstance(value, list)
            and len(value) == 2
            and value[0] in nodes
            and value[0] not in trail
        ]
        depth[node_id] = 1 + max((depth_of(s, trail | {node_id}) for s in sources), default=-1)
        return depth[node_id]

    rows: dict[int, int] = {}
    positions: dict[str, list[float]] = {}
    for node_id in nodes:
        column = depth_of(node_id, frozenset())
        row = rows.get(column, 0)
        rows[column] = row + 1
        positions[node_id] = [float(column * COLUMN_WIDTH), float(row * ROW_HEIGHT)]
    return positions
