"""ComfyUI's UI (editor) format to its API format, the way ComfyUI's own frontend does it.

Positional `widgets_values` become named inputs (control_after_generate entries skipped),
Reroute nodes collapse into direct links, PrimitiveNode values are inlined, Notes are kept
as editor notes, muted nodes (mode 2) are dropped and bypassed nodes (mode 4) pass their
matching input through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.comfy.api_format import EditorData
from easel.comfy.mapping import CONTROL_VALUES, NODE_MAPS, NOTE_TYPES, PRIMITIVE, REROUTE, NodeMap
from easel.core.graph import Problem

MODE_MUTED, MODE_BYPASSED = 2, 4


@dataclass(frozen=True)
class _Value:
    """An input fed by a PrimitiveNode: its value is inlined."""

    value: Any


@dataclass
class UIGraph:
    """The UI-format graph indexed for lookups."""

    nodes: dict[str, Mapping[str, Any]]
    links: dict[int, tuple[str, int]]  # link id -> (origin node id, origin slot)
    subgraphs: frozenset[str]


def widget_inputs(spec: NodeMap, values: Any) -> dict[str, Any]:
    """Name the positional `widgets_values` of a node after its widgets."""
    if isinstance(values, Mapping):
        return dict(values)
    if not isinstance(values, list):
        return {}
    named: dict[str, Any] = {}
    index = 0
    for name in spec.widgets:
        if index >= len(values):
            break
        named[name] = values[index]
        index += 1
        if name in spec.seeded and index < len(values) and values[index] in CONTROL_VALUES:
            index += 1  # control_after_generate: what the editor does to the seed after a run
    return named


def index_graph(data: Mapping[str, Any]) -> tuple[UIGraph, list[Problem]]:
    problems: list[Problem] = []
    nodes: dict[str, Mapping[str, Any]] = {}
    for raw in data.get("nodes") or []:
        if not isinstance(raw, Mapping) or "id" not in raw or not isinstance(raw.get("type"), str):
            problems.append(Problem(f"not a ComfyUI node (needs 'id' and 'type'): {raw!r:.80}"))
            continue
        nodes[str(raw["id"])] = raw
    links: dict[int, tuple[str, int]] = {}
    for raw in data.get("links") or []:
        if isinstance(raw, list | tuple) and len(raw) >= 3:
            link_id, origin, slot = raw[0], raw[1], raw[2]
        elif isinstance(raw, Mapping):
            link_id, origin, slot = raw.get("id"), raw.get("origin_id"), raw.get("origin_slot")
        else:
            problems.append(Problem(f"not a ComfyUI link: {raw!r:.80}"))
            continue
        if isinstance(link_id, int) and isinstance(slot, int) and origin is not None:
            links[link_id] = (str(origin), slot)
        else:
            problems.append(Problem(f"not a ComfyUI link: {raw!r:.80}"))
    definitions = data.get("definitions") or {}
    subgraphs = frozenset(str(sub.get("id")) for sub in definitions.get("subgraphs") or []
                          if isinstance(sub, Mapping))
    return UIGraph(nodes, links, subgraphs), problems


def _input_entries(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [entry for entry in node.get("inputs") or [] if isinstance(entry, Mapping)]


def _output_type(node: Mapping[str, Any], slot: int) -> str | None:
    outputs = node.get("outputs") or []
    if 0 <= slot < len(outputs) and isinstance(outputs[slot], Mapping):
        kind = outputs[slot].get("type")
        return kind if isinstance(kind, str) else None
    return None


def resolve_link(graph: UIGraph, link_id: int | None, wanted_type: str | None,
                 trail: frozenset[str] = frozenset()) -> tuple[str, int] | _Value | None:
    """The real source of a link: through reroutes and bypassed nodes, to a node output or a
    primitive's value; None when nothing arrives (muted source, unconnected reroute)."""
    if link_id is None or link_id not in graph.links:
        return None
    origin_id, slot = graph.links[link_id]
    origin = graph.nodes.get(origin_id)
    if origin is None or origin_id in trail:
        return None
    trail = trail | {origin_id}
    kind = origin["type"]
    mode = origin.get("mode", 0)
    if kind == PRIMITIVE:
        values = origin.get("widgets_values") or []
        return _Value(values[0]) if values else None
    if kind == REROUTE:
        entries = _input_entries(origin)
        return resolve_link(graph, entries[0].get("link") if entries else None, wanted_type,
                            trail)
    if mode == MODE_MUTED:
        return None
    if mode == MODE_BYPASSED:
        # As ComfyUI does: the input in the same slot if its type matches, else the first
        # input of the type the consumer expects.
        wanted = wanted_type or _output_type(origin, slot)
        entries = _input_entries(origin)
        for index in [slot, *range(len(entries))]:
            if 0 <= index < len(entries) and entries[index].get("type") == wanted:
                return resolve_link(graph, entries[index].get("link"), wanted_type, trail)
        return None
    return origin_id, slot


def _position(node: Mapping[str, Any]) -> list[float] | None:
    pos = node.get("pos")
    if isinstance(pos, Mapping):  # old LiteGraph files store a Float32Array as {"0": x, "1": y}
        pos = [pos.get("0"), pos.get("1")]
    if (isinstance(pos, list | tuple) and len(pos) >= 2
            and all(isinstance(v, int | float) for v in pos[:2])):
        return [float(pos[0]), float(pos[1])]
    return None


def ui_to_prompt(data: Mapping[str, Any]) -> tuple[dict[str, Any], EditorData, list[Problem]]:
    """The API-format prompt of a UI-format workflow, its editor data, and problems found."""
    graph, problems = index_graph(data)
    editor = EditorData()
    prompt: dict[str, Any] = {}
    for node_id, node in graph.nodes.items():
        kind = node["type"]
        position = _position(node)
        if kind in NOTE_TYPES:
            values = node.get("widgets_values") or [""]
            note: dict[str, Any] = {"text": str(values[0]) if values else ""}
            if position is not None:
                note["position"] = position
            editor.notes[node_id] = note
            continue
        if kind in (REROUTE, PRIMITIVE) or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASSED):
            continue
        spec = NODE_MAPS.get(kind)
        if spec is None and kind in graph.subgraphs:
            problems.append(Problem("ComfyUI subgraphs are not converted: unpack the subgraph "
                                    "in ComfyUI first", node=node_id, node_type=kind))
            continue
        inputs = widget_inputs(spec, node.get("widgets_values")) if spec is not None else {}
        for entry in _input_entries(node):
            widget = entry.get("widget")
            name = widget.get("name") if isinstance(widget, Mapping) else None
            name = name or entry.get("name")
            if not isinstance(name, str):
                continue
            link_id = entry.get("link")
            if link_id is None:
                continue  # an unconnected socket (its widget value, if any, stays)
            source = resolve_link(graph, link_id, entry.get("type")
                                  if isinstance(entry.get("type"), str) else None)
            if isinstance(source, _Value):
                inputs[name] = source.value
            elif source is not None:
                inputs[name] = [source[0], source[1]]
            else:
                inputs.pop(name, None)  # nothing arrives: ComfyUI leaves the input out too
        entry_out: dict[str, Any] = {"class_type": kind, "inputs": inputs}
        title = node.get("title")
        if isinstance(title, str) and title:
            entry_out["_meta"] = {"title": title}
        prompt[node_id] = entry_out
        if position is not None:
            editor.positions[node_id] = position
    return prompt, editor, problems
