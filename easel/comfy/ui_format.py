"""ComfyUI's UI (editor) format to its API format, the way ComfyUI's own frontend does it.

Positional `widgets_values` become named inputs (control_after_generate entries skipped,
whether a word or an old boolean), Reroute nodes collapse into direct links, PrimitiveNode
values go into the widgets they feed, Notes are kept as editor notes, groups as editor groups,
muted nodes (mode 2) are dropped with what needs them, and bypassed nodes (mode 4) pass an
input of the matching type through. Subgraphs are expanded first (`easel.comfy.subgraphs`).
The rules follow the frontend's `graphToPrompt` and `ExecutableNodeDTO.resolveOutput`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.comfy.api_format import EditorData, node_sort_key
from easel.comfy.mapping import CONTROL_VALUES, NODE_MAPS, NOTE_TYPES, PRIMITIVE, REROUTE, NodeMap
from easel.comfy.subgraphs import flatten_subgraphs
from easel.core.graph import Problem

MODE_MUTED, MODE_BYPASSED = 2, 4
ANY_TYPES = ("*", "")
# The frontend's legacy group nodes: "workflow>NAME" (older files "workflow/NAME"), defined in
# extra.groupNodes.
GROUP_NODE_PREFIXES = ("workflow>", "workflow/")


@dataclass(frozen=True)
class _Value:
    """An input fed by a PrimitiveNode: its value goes into the widget."""

    value: Any


@dataclass(frozen=True)
class _Muted:
    """An input fed by a muted node: ComfyUI removes the input, so the consumer cannot run."""

    node: str


Source = tuple[str, int] | _Value | _Muted | None


@dataclass
class UIGraph:
    """The UI-format graph indexed for lookups."""

    nodes: dict[str, Mapping[str, Any]]
    links: dict[int, tuple[str, int]]  # link id -> (origin node id, origin slot)


def is_control_value(value: Any) -> bool:
    """What the editor stores after a seed widget: a word in current files, and in files from
    2023 the boolean of a "random seed" toggle."""
    return isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_VALUES)


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
        if name in spec.seeded and index < len(values) and is_control_value(values[index]):
            index += 1  # control_after_generate: what the editor does to the seed after a run
    return named


def index_graph(data: Mapping[str, Any]) -> tuple[UIGraph, list[Problem]]:
    problems: list[Problem] = []
    nodes: dict[str, Mapping[str, Any]] = {}
    for raw in as_list(data.get("nodes")):
        if not isinstance(raw, Mapping) or "id" not in raw or not isinstance(raw.get("type"), str):
            problems.append(Problem(f"not a ComfyUI node (needs 'id' and 'type'): {raw!r:.80}"))
            continue
        nodes[str(raw["id"])] = raw
    links: dict[int, tuple[str, int]] = {}
    raw_links = data.get("links") or []
    if not isinstance(raw_links, list):
        problems.append(Problem("'links' must be a list"))
        raw_links = []
    for raw in raw_links:
        # Schema 0.4: [id, origin_id, origin_slot, target_id, target_slot, type];
        # schema 1: {"id", "origin_id", "origin_slot", "target_id", "target_slot", "type"}.
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
    return UIGraph(nodes, links), problems


def as_list(value: Any) -> list[Any]:
    """`value` when it is a list, else an empty list (hand-edited files hold anything)."""
    return value if isinstance(value, list) else []


def _input_entries(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [entry for entry in as_list(node.get("inputs")) if isinstance(entry, Mapping)]


def _slot_type(slots: Any, slot: int) -> str | None:
    if isinstance(slots, list) and 0 <= slot < len(slots) and isinstance(slots[slot], Mapping):
        kind = slots[slot].get("type")
        return kind if isinstance(kind, str) else None
    return None


def types_match(first: str | None, second: str | None) -> bool:
    """LiteGraph's `isValidConnection`: "*" or no type matches anything, otherwise the
    comma-separated type lists share a type (case-insensitive)."""
    if first in (None, *ANY_TYPES) or second in (None, *ANY_TYPES) or first == second:
        return True
    assert first is not None and second is not None
    return bool(set(first.lower().split(",")) & set(second.lower().split(",")))


def bypass_input(node: Mapping[str, Any], slot: int, wanted: str | None) -> int | None:
    """The input a bypassed node passes to its output `slot`, as ComfyUI chooses it: the input
    in the same slot when its type fits, else the first input of exactly the wanted type, else
    the first whose type fits; None when no input fits."""
    entries = _input_entries(node)
    if wanted in ANY_TYPES:
        return slot if slot < len(entries) else (0 if entries else None)
    output_type = _slot_type(node.get("outputs"), slot)

    def fits(index: int) -> bool:
        kind = _slot_type(entries, index)
        return types_match(kind, output_type) and types_match(kind, wanted)

    if slot < len(entries) and fits(slot):
        return slot
    exact = [i for i in range(len(entries)) if entries[i].get("type") == wanted]
    if exact:
        return exact[0]
    return next((i for i in range(len(entries)) if fits(i)), None)


def resolve_link(
    graph: UIGraph, link_id: Any, wanted_type: str | None, trail: frozenset[str] = frozenset()
) -> Source:
    """The real source of a link: through reroutes and bypassed nodes, to a node output, a
    primitive's value or a muted node; None when nothing arrives (unconnected reroute, a
    bypassed node with no input of the type)."""
    if not isinstance(link_id, int) or link_id not in graph.links:
        return None
    origin_id, slot = graph.links[link_id]
    origin = graph.nodes.get(origin_id)
    if origin is None or origin_id in trail:
        return None
    trail = trail | {origin_id}
    kind = origin["type"]
    mode = origin.get("mode", 0)
    if kind == PRIMITIVE:
        values = as_list(origin.get("widgets_values"))
        return _Value(values[0]) if values else None
    if mode == MODE_BYPASSED:
        index = bypass_input(origin, slot, wanted_type)
        if index is None:
            return None
        entry = _input_entries(origin)[index]
        # As the frontend: past a bypassed node, the type sought is that of its input.
        return resolve_link(
            graph, entry.get("link"), _slot_type(_input_entries(origin), index), trail
        )
    if kind == REROUTE:
        entries = _input_entries(origin)
        return resolve_link(graph, entries[0].get("link") if entries else None, wanted_type, trail)
    if mode == MODE_MUTED:
        return _Muted(origin_id)
    return origin_id, slot


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, Mapping):  # old LiteGraph files store a Float32Array as {"0": x, ...}
        value = [value.get("0"), value.get("1")]
    if (
        isinstance(value, list | tuple)
        and len(value) >= 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value[:2])
    ):
        return float(value[0]), float(value[1])
    return None


def _position(node: Mapping[str, Any]) -> list[float] | None:
    pair = _pair(node.get("pos"))
    return list(pair) if pair is not None else None


def editor_groups(data: Mapping[str, Any], graph: UIGraph) -> list[dict[str, Any]]:
    """The UI format's groups: title, bounding box [x, y, width, height], colour, and the nodes
    whose centre lies inside (as ComfyUI decides membership)."""
    groups: list[dict[str, Any]] = []
    for raw in as_list(data.get("groups")):
        if not isinstance(raw, Mapping):
            continue
        box = raw.get("bounding")
        if not (
            isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)
        ):
            continue
        x, y, width, height = (float(v) for v in box)
        members = []
        for node_id, node in graph.nodes.items():
            position, size = _pair(node.get("pos")), _pair(node.get("size")) or (0.0, 0.0)
            if position is None:
                continue
            cx, cy = position[0] + size[0] / 2, position[1] + size[1] / 2
            if x <= cx <= x + width and y <= cy <= y + height:
                members.append(node_id)
        group: dict[str, Any] = {
            "title": str(raw.get("title") or ""),
            "bounding": [x, y, width, height],
            "nodes": members,
        }
        if isinstance(raw.get("color"), str):
            group["color"] = raw["color"]
        groups.append(group)
    return groups


def ui_to_prompt(
    data: Mapping[str, Any],
    node_maps: Mapping[str, NodeMap] = NODE_MAPS,
) -> tuple[dict[str, Any], EditorData, list[Problem]]:
    """The API-format prompt of a UI-format workflow, its editor data, and problems found."""
    data, problems = flatten_subgraphs(data, node_maps)
    graph, index_problems = index_graph(data)
    problems += index_problems
    editor = EditorData()
    prompt: dict[str, Any] = {}
    cut: dict[str, set[str]] = {}  # node id -> its inputs fed by a muted node
    for node_id, node in graph.nodes.items():
        kind = node["type"]
        position = _position(node)
        if kind in NOTE_TYPES:
            values = as_list(node.get("widgets_values"))
            note: dict[str, Any] = {"text": str(values[0]) if values else ""}
            if position is not None:
                note["position"] = position
            editor.notes[node_id] = note
            continue
        if kind in (REROUTE, PRIMITIVE) or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASSED):
            continue
        spec = node_maps.get(kind)
        if spec is None and kind.startswith(GROUP_NODE_PREFIXES):
            problems.append(
                Problem(
                    'ComfyUI group nodes are not converted: choose "Convert to '
                    'nodes" on it in ComfyUI first',
                    node=node_id,
                    node_type=kind,
                )
            )
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
            wanted = entry.get("type")
            source = resolve_link(graph, link_id, wanted if isinstance(wanted, str) else None)
            if isinstance(source, _Value):
                inputs[name] = source.value
            elif isinstance(source, tuple):
                inputs[name] = [source[0], source[1]]
            else:
                inputs.pop(name, None)  # nothing arrives: ComfyUI leaves the input out too
                if isinstance(source, _Muted):
                    cut.setdefault(node_id, set()).add(name)
        entry_out: dict[str, Any] = {"class_type": kind, "inputs": inputs}
        title = node.get("title")
        if isinstance(title, str) and title:
            entry_out["_meta"] = {"title": title}
        prompt[node_id] = entry_out
        if position is not None:
            editor.positions[node_id] = position
    _drop_what_needs_muted(graph, prompt, cut, node_maps, problems)
    _drop_incomplete_dead_ends(graph, prompt, node_maps, editor)
    editor.groups = editor_groups(data, graph)
    return prompt, editor, problems


def _drop_incomplete_dead_ends(
    graph: UIGraph,
    prompt: dict[str, Any],
    node_maps: Mapping[str, NodeMap],
    editor: EditorData,
) -> None:
    """Drop what no output needs and cannot run: a node with a socket left unconnected, and
    what it feeds.

    ComfyUI runs only what its output nodes need, so such nodes (a spare ResizeImageMaskNode
    left in a template) never run there and are never checked; here they would fail
    validation for the missing input. A complete node that no output needs stays (it never
    runs either, and the editor keeps it); what an output needs is never dropped."""

    def links(node_id: str) -> list[str]:
        return [
            value[0]
            for value in prompt[node_id]["inputs"].values()
            if isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], str)
            and value[0] in prompt
        ]

    def unconnected(node_id: str) -> bool:
        return node_id in graph.nodes and any(
            entry.get("link") is None and not isinstance(entry.get("widget"), Mapping)
            for entry in _input_entries(graph.nodes[node_id])
        )

    def is_output(node_id: str) -> bool:
        spec = node_maps.get(prompt[node_id]["class_type"])
        return spec is not None and spec.is_output

    needed = {node_id for node_id in prompt if is_output(node_id)}
    stack = list(needed)
    while stack:
        for source in links(stack.pop()):
            if source not in needed:
                needed.add(source)
                stack.append(source)
    broken = {node_id for node_id in prompt if node_id not in needed and unconnected(node_id)}
    changed = bool(broken)
    while changed:
        changed = False
        for node_id in prompt:
            if node_id not in needed and node_id not in broken and set(links(node_id)) & broken:
                broken.add(node_id)
                changed = True
    for node_id in broken:
        del prompt[node_id]
        editor.positions.pop(node_id, None)


def _drop_what_needs_muted(
    graph: UIGraph,
    prompt: dict[str, Any],
    cut: dict[str, set[str]],
    node_maps: Mapping[str, NodeMap],
    problems: list[Problem],
) -> None:
    """Drop the nodes that lose a required input to a muted node, then what needs them.

    ComfyUI removes inputs fed by muted nodes and then runs only the outputs whose nodes
    still have their required inputs; dropping the rest here gives the same run. A node that
    loses only optional inputs stays."""

    def optional(node_id: str) -> frozenset[str]:
        spec = node_maps.get(prompt[node_id]["class_type"])
        return spec.optional if spec is not None else frozenset()

    dropped = {node_id for node_id, names in cut.items() if names - optional(node_id)}
    changed = bool(dropped)
    while changed:
        changed = False
        for node_id, entry in prompt.items():
            if node_id in dropped:
                continue
            for name, value in list(entry["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and value[0] in dropped:
                    del entry["inputs"][name]
                    if name not in optional(node_id):
                        dropped.add(node_id)
                        changed = True
                        break
    for node_id in dropped:
        del prompt[node_id]

    def is_output(node: Mapping[str, Any]) -> bool:
        spec = node_maps.get(node["type"])
        return spec is not None and spec.is_output

    had_outputs = any(is_output(node) for node in graph.nodes.values())
    if had_outputs and not any(is_output({"type": e["class_type"]}) for e in prompt.values()):
        muted = sorted(
            (node_id for node_id, node in graph.nodes.items() if node.get("mode", 0) == MODE_MUTED),
            key=node_sort_key,
        )
        problems.append(
            Problem(
                "nothing to run: every output node is muted, bypassed or "
                f"needs a muted node (muted: {', '.join(muted) or 'none'})"
            )
        )
