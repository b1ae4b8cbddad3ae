"""ComfyUI subgraphs (UI format) expanded into one flat UI-format graph, as ComfyUI's frontend
flattens them before it queues a prompt.

A subgraph is defined once under `definitions.subgraphs` (an `id`, `inputs`, `outputs`,
`nodes`, `links`) and used by nodes whose `type` is that id (instances; nested ones too).
Following the frontend (`ExecutableNodeDTO`, `SubgraphNode`):

- every inner node of an instance becomes a node of its own, with ComfyUI's execution id:
  the instance ids from the root down, then the inner id, joined by ":" (`"57:27"` is node 27
  of the subgraph that node 57 instantiates; `"12:5:3"` one level deeper). So
  `--set 57:27.text=...` addresses it;
- a link from the subgraph's input node (id -10) takes what feeds the instance's input of
  that slot (matched by name, as the frontend rebinds them): the outer link when there is
  one, else the value of the widget the input promotes: the instance's `widgets_values`,
  one per promoted input in the definition's input order (a control_after_generate entry
  after a seed when the list is longer), else the inner widget's own value;
- an instance's output slot is what the definition's output node (id -20) links to it;
- a muted (mode 2) or bypassed (mode 4) instance runs none of its nodes: it stays as one
  muted or bypassed node, so what it feeds is dropped, or gets the instance's input of the
  matching type, by the same rules as any muted or bypassed node.

The result is plain UI-format data (links as arrays); `ui_format.ui_to_prompt` converts it.
Values promoted from unlinked inputs travel as PrimitiveNode entries, which the converter
folds into the widgets they feed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from easel.comfy.mapping import CONTROL_VALUES, NodeMap
from easel.core.graph import Problem

SUBGRAPH_INPUT_ID = -10
SUBGRAPH_OUTPUT_ID = -20
MODE_MUTED, MODE_BYPASSED = 2, 4
PRIMITIVE = "PrimitiveNode"
# A file may nest subgraphs so that they multiply (10 instances of a subgraph of 10 instances
# of ...): expansion stops with a problem past these bounds instead of exhausting memory.
MAX_DEPTH = 32
MAX_NODES = 20_000


@dataclass(frozen=True)
class Origin:
    """An output slot of a node of the flat graph."""

    node: str
    slot: int


@dataclass(frozen=True)
class Value:
    """A widget value promoted through a subgraph input that nothing outside feeds; `key`
    names that input (instance path, slot)."""

    value: Any
    key: tuple[str, int] = ("", 0)


Source = Origin | Value | None


@dataclass
class Link:
    origin: Any
    slot: int
    target: Any
    target_slot: int
    type: Any


@dataclass
class Scope:
    """One graph level: the root workflow, or one instance's copy of a definition."""

    path: tuple[str, ...]
    nodes: dict[str, Mapping[str, Any]]
    links: dict[int, Link]
    definition: Mapping[str, Any] | None = None
    instance: Mapping[str, Any] | None = None
    parent: Scope | None = None
    children: dict[str, Scope] = field(default_factory=dict)

    def flat_id(self, node_id: Any) -> str:
        return ":".join((*self.path, str(node_id)))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _entries(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in _list(value) if isinstance(item, Mapping)]


def _links(raw_links: Any) -> dict[int, Link]:
    links: dict[int, Link] = {}
    for raw in _list(raw_links):
        if isinstance(raw, list | tuple) and len(raw) >= 5:
            link_id, origin, slot, target, target_slot = raw[:5]
            kind = raw[5] if len(raw) > 5 else None
        elif isinstance(raw, Mapping):
            link_id, origin, slot = raw.get("id"), raw.get("origin_id"), raw.get("origin_slot")
            target, target_slot, kind = (
                raw.get("target_id"),
                raw.get("target_slot"),
                raw.get("type"),
            )
        else:
            continue
        if isinstance(link_id, int) and isinstance(slot, int):
            links[link_id] = Link(
                origin, slot, target, target_slot if isinstance(target_slot, int) else -1, kind
            )
    return links


def _is_io(origin: Any, io_id: int) -> bool:
    return str(origin) == str(io_id)


def definitions(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The subgraph definitions of a UI-format workflow by id (nested `definitions` too)."""
    found: dict[str, Mapping[str, Any]] = {}
    pending = [data]
    while pending:
        holder = pending.pop()
        defs = holder.get("definitions")
        for sub in _entries(defs.get("subgraphs") if isinstance(defs, Mapping) else None):
            if isinstance(sub.get("id"), str) and sub["id"] not in found:
                found[sub["id"]] = sub
                pending.append(sub)
    return found


class Flattener:
    """Expands the subgraph instances of one workflow (see the module docstring)."""

    def __init__(self, data: Mapping[str, Any], node_maps: Mapping[str, NodeMap]) -> None:
        self.defs = definitions(data)
        self.node_maps = node_maps
        self.problems: list[Problem] = []
        self.nodes: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []
        self.link_ids = itertools.count(1)
        self.values: dict[tuple[str, int], str] = {}  # (instance flat id, slot) -> primitive
        self.node_count = 0
        self.root = self._scope((), data, None, None, None, ())

    # -- scopes ---------------------------------------------------------------------
    def _scope(
        self,
        path: tuple[str, ...],
        graph: Mapping[str, Any],
        definition: Mapping[str, Any] | None,
        instance: Mapping[str, Any] | None,
        parent: Scope | None,
        trail: tuple[str, ...],
    ) -> Scope:
        nodes = {str(n["id"]): n for n in _entries(graph.get("nodes")) if "id" in n}
        scope = Scope(path, nodes, _links(graph.get("links")), definition, instance, parent)
        self.node_count += len(nodes)
        for node_id, node in nodes.items():
            kind = node.get("type")
            if kind not in self.defs or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASSED):
                continue
            if kind in trail:
                self.problems.append(
                    Problem(
                        f"subgraph {self.defs[kind].get('name') or kind!r} contains itself",
                        node=scope.flat_id(node_id),
                        node_type=str(kind),
                    )
                )
                continue
            if len(path) >= MAX_DEPTH or self.node_count > MAX_NODES:
                self.problems.append(
                    Problem(
                        f"subgraphs nested more than {MAX_DEPTH} deep or expanding to more than "
                        f"{MAX_NODES:,} nodes are not converted",
                        node=scope.flat_id(node_id),
                        node_type=str(kind),
                    )
                )
                continue
            scope.children[node_id] = self._scope(
                (*path, node_id), self.defs[kind], self.defs[kind], node, scope, (*trail, str(kind))
            )
        return scope

    # -- output ---------------------------------------------------------------------
    def flatten(self, data: Mapping[str, Any]) -> dict[str, Any]:
        self._emit(self.root, None)
        flat = {key: value for key, value in data.items() if key != "definitions"}
        flat["nodes"] = self.nodes
        flat["links"] = self.links
        return flat

    def _emit(self, scope: Scope, offset: tuple[float, float] | None) -> None:
        for node_id, node in scope.nodes.items():
            child = scope.children.get(node_id)
            if child is not None:
                self._emit(child, _inner_offset(node, child.definition or {}))
                continue
            kind = node.get("type")
            if kind in self.defs and node.get("mode", 0) not in (MODE_MUTED, MODE_BYPASSED):
                continue  # not expanded (it contains itself, or too many nodes): reported
            flat = dict(node)
            flat["id"] = scope.flat_id(node_id)
            if kind in self.defs:  # a muted or bypassed instance: one node, as ComfyUI
                definition = self.defs[kind]
                inputs = [dict(entry, link=None) for entry in _entries(definition.get("inputs"))]
                for index, entry in enumerate(inputs):
                    outer = _instance_input(node, definition, index)
                    entry["link"] = outer.get("link") if outer is not None else None
                flat["inputs"] = inputs
                flat["outputs"] = [
                    {"name": o.get("name"), "type": o.get("type")}
                    for o in _entries(definition.get("outputs"))
                ]
            else:
                flat["inputs"] = [dict(entry) for entry in _entries(node.get("inputs"))]
            for slot, entry in enumerate(flat["inputs"]):
                entry["link"] = self._flat_link(
                    scope, entry.get("link"), flat["id"], slot, entry.get("type")
                )
            if offset is not None:
                position = _pair(node.get("pos"))
                if position is None:
                    flat.pop("pos", None)
                else:
                    flat["pos"] = [position[0] + offset[0], position[1] + offset[1]]
            self.nodes.append(flat)

    def _flat_link(
        self, scope: Scope, link_id: Any, target: str, slot: int, kind: Any
    ) -> int | None:
        source = self.resolve(scope, link_id, frozenset())
        if isinstance(source, Value):
            origin = self._primitive(source)
            link = next(self.link_ids)
            self.links.append([link, origin, 0, target, slot, kind])
            return link
        if isinstance(source, Origin):
            link = next(self.link_ids)
            self.links.append([link, source.node, source.slot, target, slot, kind])
            return link
        return None

    def _primitive(self, value: Value) -> str:
        """A PrimitiveNode of the flat graph carrying a promoted value (one per instance input
        that needs one)."""
        if value.key not in self.values:
            node_id = f"{value.key[0]}:input{value.key[1]}"
            self.values[value.key] = node_id
            self.nodes.append(
                {
                    "id": node_id,
                    "type": PRIMITIVE,
                    "mode": 0,
                    "widgets_values": [value.value],
                    "inputs": [],
                    "outputs": [{"name": "value", "type": "*"}],
                }
            )
        return self.values[value.key]

    # -- resolution -----------------------------------------------------------------
    def resolve(self, scope: Scope, link_id: Any, seen: frozenset[tuple[str, Any]]) -> Source:
        """Where a link of `scope` really comes from in the flat graph."""
        link = scope.links.get(link_id) if isinstance(link_id, int) else None
        key = (":".join(scope.path), link_id)
        if link is None or key in seen:
            return None
        seen = seen | {key}
        if _is_io(link.origin, SUBGRAPH_INPUT_ID):
            return self._subgraph_input(scope, link.slot, seen)
        child = scope.children.get(str(link.origin))
        if child is not None:
            return self._subgraph_output(child, link.slot, seen)
        return Origin(scope.flat_id(link.origin), link.slot)

    def _subgraph_output(self, scope: Scope, slot: int, seen: frozenset[tuple[str, Any]]) -> Source:
        outputs = _entries((scope.definition or {}).get("outputs"))
        if not 0 <= slot < len(outputs):
            return None
        inner = [lid for lid in _list(outputs[slot].get("linkIds")) if lid in scope.links]
        return self.resolve(scope, inner[0], seen) if inner else None

    def _subgraph_input(self, scope: Scope, slot: int, seen: frozenset[tuple[str, Any]]) -> Source:
        if scope.instance is None or scope.parent is None or scope.definition is None:
            return None
        outer = _instance_input(scope.instance, scope.definition, slot)
        if outer is not None and outer.get("link") is not None:
            return self.resolve(scope.parent, outer["link"], seen)
        promoted = self.promoted_value(scope, slot)
        if promoted is None:
            return None
        return Value(promoted.value, (":".join(scope.path), slot))

    def promoted_value(self, scope: Scope, slot: int) -> Value | None:
        """The value of the widget that subgraph input `slot` of `scope`'s instance promotes,
        or None when it promotes none (a MODEL input, say) or its value is unknown."""
        definition, instance = scope.definition or {}, scope.instance or {}
        promoted = [
            index
            for index in range(len(_entries(definition.get("inputs"))))
            if self._widget_target(scope, index) is not None
        ]
        if slot not in promoted:
            return None
        values = _list(instance.get("widgets_values"))
        with_controls = len(values) > len(promoted)
        position = 0
        for index in promoted:
            if index == slot:
                if position < len(values):
                    return Value(values[position])
                break
            position += 1
            if (
                with_controls
                and position < len(values)
                and self._is_seed(scope, index)
                and isinstance(values[position], str)
                and values[position] in CONTROL_VALUES
            ):
                position += 1
        target = self._widget_target(scope, slot)
        return self._interior_value(scope, *target) if target is not None else None

    def _widget_target(self, scope: Scope, index: int) -> tuple[str, str] | None:
        """(inner node id, widget name) of the first widget input that subgraph input `index`
        feeds, as the frontend picks the widget it promotes."""
        inputs = _entries((scope.definition or {}).get("inputs"))
        if not 0 <= index < len(inputs):
            return None
        for link_id in _list(inputs[index].get("linkIds")):
            link = scope.links.get(link_id)
            node = scope.nodes.get(str(link.target)) if link is not None else None
            if link is None or node is None:
                continue
            entries = _entries(node.get("inputs"))
            entry = entries[link.target_slot] if 0 <= link.target_slot < len(entries) else None
            if entry is None:
                continue
            child = scope.children.get(str(link.target))
            if child is not None:  # nested promotion: an inner instance's promoted input
                nested = _definition_index(child.definition or {}, entry.get("name"))
                if nested is not None and self._widget_target(child, nested) is not None:
                    return str(link.target), f"\0{nested}"
                continue
            widget = entry.get("widget")
            if isinstance(widget, Mapping) and isinstance(widget.get("name"), str):
                return str(link.target), widget["name"]
        return None

    def _interior_value(self, scope: Scope, node_id: str, widget: str) -> Value | None:
        child = scope.children.get(node_id)
        if widget.startswith("\0") and child is not None:
            return self.promoted_value(child, int(widget[1:]))
        node = scope.nodes[node_id]
        values = node.get("widgets_values")
        if isinstance(values, Mapping):
            return Value(values[widget]) if widget in values else None
        spec = self.node_maps.get(str(node.get("type")))
        if spec is None:
            return None
        from easel.comfy.ui_format import widget_inputs

        named = widget_inputs(spec, values)
        return Value(named[widget]) if widget in named else None

    def _is_seed(self, scope: Scope, index: int) -> bool:
        target = self._widget_target(scope, index)
        if target is None or target[1].startswith("\0"):
            return False
        spec = self.node_maps.get(str(scope.nodes[target[0]].get("type")))
        return spec is not None and target[1] in spec.seeded


def _definition_index(definition: Mapping[str, Any], name: Any) -> int | None:
    for index, entry in enumerate(_entries(definition.get("inputs"))):
        if entry.get("name") == name:
            return index
    return None


def _instance_input(
    instance: Mapping[str, Any], definition: Mapping[str, Any], slot: int
) -> Mapping[str, Any] | None:
    """The instance's serialized input for definition input `slot`: by name and type, then by
    name (the frontend rebinds them so), else by position when the file has no names."""
    inputs = _entries(definition.get("inputs"))
    if not 0 <= slot < len(inputs):
        return None
    wanted = inputs[slot]
    entries = _entries(instance.get("inputs"))
    same_name = [e for e in entries if e.get("name") == wanted.get("name")]
    exact = [e for e in same_name if e.get("type") == wanted.get("type")]
    if exact or same_name:
        return (exact or same_name)[0]
    if entries and not any("name" in e for e in entries) and slot < len(entries):
        return entries[slot]
    return None


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, Mapping):
        value = [value.get("0"), value.get("1")]
    if (
        isinstance(value, list | tuple)
        and len(value) >= 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value[:2])
    ):
        return float(value[0]), float(value[1])
    return None


def _inner_offset(
    instance: Mapping[str, Any], definition: Mapping[str, Any]
) -> tuple[float, float] | None:
    """Inner nodes are placed from the instance's position on (the editor shows them flat)."""
    anchor = _pair(instance.get("pos"))
    corners = [
        p for p in (_pair(n.get("pos")) for n in _entries(definition.get("nodes"))) if p is not None
    ]
    if anchor is None or not corners:
        return None
    return anchor[0] - min(p[0] for p in corners), anchor[1] - min(p[1] for p in corners)


def flatten_subgraphs(
    data: Mapping[str, Any], node_maps: Mapping[str, NodeMap]
) -> tuple[Mapping[str, Any], list[Problem]]:
    """`data` with every subgraph instance expanded (unchanged when it has none), and the
    problems found (a subgraph that contains itself)."""
    defs = definitions(data)
    if not defs:
        return data, []
    flattener = Flattener(data, node_maps)
    return flattener.flatten(data), flattener.problems
