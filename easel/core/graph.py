"""The workflow format, its validation against the registry, and the execution plan."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx
import pydantic

from easel.core.context import Context
from easel.core.modes import effective_workflow
from easel.core.node import InputSpec, NodeType
from easel.core.plugins import Registry
from easel.core.types import compatible

FORMAT = "easel.workflow"
VERSION = 1


class NodeSpec(pydantic.BaseModel):
    """One node of a workflow: its type and its inputs (literals or links)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    type: str
    inputs: dict[str, Any] = pydantic.Field(default_factory=dict)
    # "bypass" or "mute" (easel.core.modes); left out of the JSON when the node runs.
    mode: Literal["bypass", "mute"] | None = pydantic.Field(
        None, exclude_if=lambda value: value is None
    )


class Workflow(pydantic.BaseModel):
    """A workflow file: `{"format": "easel.workflow", "version": 1, "nodes": {}, "ui": {}}`."""

    model_config = pydantic.ConfigDict(extra="forbid")
    format: Literal["easel.workflow"]
    version: Literal[1]
    nodes: dict[str, NodeSpec]
    ui: dict[str, Any] = pydantic.Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Link:
    """An input fed by another node's output: `[node_id, output_name]` in JSON."""

    node: str
    output: str


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow, located as precisely as possible."""

    message: str
    node: str | None = None
    input: str | None = None
    node_type: str | None = None

    def __str__(self) -> str:
        where = []
        if self.node is not None:
            where.append(f"node {self.node!r}" + (f" ({self.node_type})" if self.node_type else ""))
        if self.input is not None:
            where.append(f"input {self.input!r}")
        return (", ".join(where) + ": " if where else "") + self.message

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "node_type": self.node_type,
            "input": self.input,
            "message": self.message,
        }


class WorkflowError(Exception):
    """A workflow was refused; `problems` lists every reason at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = len(problems)
        lines = [f"invalid workflow ({count} problem{'s' if count != 1 else ''}):"]
        lines += [f"  - {problem}" for problem in problems]
        super().__init__("\n".join(lines))


@dataclass
class PlannedNode:
    """A validated node: its type, clean literal values (defaults filled) and links.

    `mapped`: some input receives a list output it does not take `as_list`, so the node runs
    once per item and every output is a list. `list_outputs`: its outputs that are lists.
    `check_at_run`: its `check` needs linked values, so it runs when they are known.
    """

    id: str
    node_type: NodeType
    literals: dict[str, Any]
    links: dict[str, Link]
    mapped: bool = False
    list_outputs: frozenset[str] = frozenset()
    check_at_run: bool = False


@dataclass
class Plan:
    """What to run, in which order, to produce `targets`.

    `deferred` nodes feed only lazy inputs (directly or through other deferred nodes): they
    run when a node's `needs` asks for them, else never. `workflow` is what was validated
    (hidden `workflow` inputs receive it).
    """

    nodes: dict[str, PlannedNode]
    order: list[str]
    targets: list[str]
    consumers: dict[str, int] = field(default_factory=dict)
    deferred: frozenset[str] = frozenset()
    workflow: Workflow | None = None


def parse_workflow(source: str | bytes | Mapping[str, Any]) -> Workflow:
    """Parse JSON text or a dict into a Workflow, or raise WorkflowError."""
    if isinstance(source, str | bytes):
        try:
            data = json.loads(source)
        except json.JSONDecodeError as exc:
            raise WorkflowError(
                [Problem(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")]
            ) from None
    else:
        data = source
    if not isinstance(data, Mapping):
        raise WorkflowError([Problem(f"a workflow is a JSON object, got {type(data).__name__}")])
    if "format" not in data and "nodes" not in data:
        raise WorkflowError(
            [
                Problem(
                    'not an Easel workflow: expected {"format": "easel.workflow", "version": 1, '
                    '"nodes": {...}} (ComfyUI files are converted by `easel convert comfy`)'
                )
            ]
        )
    try:
        return Workflow.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = [str(part) for part in err["loc"]]
            node = loc[1] if len(loc) >= 2 and loc[0] == "nodes" else None
            if err["type"] == "extra_forbidden":
                where = "top level" if len(loc) == 1 else f"node {node!r}"
                message = f"unknown key {loc[-1]!r} at {where}"
                if len(loc) == 1:
                    message += " (allowed: format, version, nodes, ui)"
                problems.append(Problem(message, node=node if len(loc) > 1 else None))
            else:
                field_path = ".".join(loc)
                problems.append(Problem(f"{field_path}: {err['msg']}", node=node))
        raise WorkflowError(problems) from None


def as_link(value: Any) -> Link | None:
    """The link a JSON input value stands for, if it is one."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], str)
    ):
        return Link(value[0], value[1])
    return None


def validate(
    workflow: Workflow | str | bytes | Mapping[str, Any],
    registry: Registry,
    targets: Iterable[str] | None = None,
    context: Context | None = None,
) -> Plan:
    """Check the whole workflow and return its plan; raise WorkflowError listing every problem."""
    if not isinstance(workflow, Workflow):
        workflow = parse_workflow(workflow)
    original = workflow
    workflow = effective_workflow(workflow, registry)
    if targets is not None and workflow is not original:  # bypassed or muted: not run
        targets = [t for t in targets if t in workflow.nodes or t not in original.nodes]
    problems: list[Problem] = []
    planned: dict[str, PlannedNode] = {}
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(workflow.nodes)
    ctx = context or Context()
    for node_id, spec in workflow.nodes.items():
        node = _plan_node(node_id, spec, workflow, registry, problems, ctx)
        if node is not None:
            planned[node_id] = node
            for link in node.links.values():
                graph.add_edge(link.node, node_id)
    for cycle in _cycles(graph):
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(Problem(f"cycle: {path}", node=cycle[0]))
    wanted = _targets(workflow, registry, targets, problems)
    if problems:
        raise WorkflowError(problems)
    return _make_plan(graph, planned, wanted, original)


def _unknown_type(registry: Registry, type_name: str) -> str:
    if type_name in registry.collisions:
        owners = " and ".join(repr(o) for o in registry.collisions[type_name])
        return (
            f"node type {type_name!r} is defined by both plugins {owners}; "
            "disable one (EASEL_DISABLE_PLUGINS)"
        )
    reason = f"unknown node type {type_name!r}"
    suggestion = registry.suggest(type_name)
    return reason + (f"; did you mean {suggestion!r}?" if suggestion else "")


def _plan_node(
    node_id: str,
    spec: NodeSpec,
    workflow: Workflow,
    registry: Registry,
    problems: list[Problem],
    ctx: Context,
) -> PlannedNode | None:
    """One node's links and clean literals, or None when it has problems (reported)."""
    node_type = registry.get(spec.type)
    if node_type is None:
        problems.append(Problem(_unknown_type(registry, spec.type), node=node_id))
        return None
    problem = _Reporter(problems, node_id, spec.type)
    problems_before = len(problems)
    literals: dict[str, Any] = {}
    links: dict[str, Link] = {}
    for name, value in spec.inputs.items():
        input_spec = node_type.inputs.get(name)
        if input_spec is None:
            known = ", ".join(node_type.inputs) or "none"
            problem(f"unknown input (this node's inputs: {known})", name)
            continue
        link = as_link(value)
        if link is not None:
            if _link_ok(link, input_spec, workflow, registry, problem, name):
                links[name] = link
        else:
            literal = _literal(value, input_spec, problem, name)
            if literal is not _NOT_A_LITERAL:
                literals[name] = literal
    for name, input_spec in node_type.inputs.items():
        if name not in spec.inputs and input_spec.required:
            problem(f"missing required input ({input_spec.type})", name)
    clean, errors = node_type.validate_literals(literals)
    for name, reason in errors:
        problem(reason, name)
    if len(problems) > problems_before:
        return None
    full = {name: value for name, value in node_type.value_defaults.items() if name not in links}
    full.update(clean)
    check_at_run = node_type.check is not None and any(
        node_type.inputs[name].is_value for name in links
    )
    if node_type.check is not None and not check_at_run:
        try:
            for bad_input, reason in node_type.check(ctx, dict(full)) or ():
                problem(reason, bad_input)
        except Exception as exc:  # a check's bug is reported, not raised
            problem(f"input check failed: {type(exc).__name__}: {exc}")
    return PlannedNode(node_id, node_type, full, links, check_at_run=check_at_run)


def _link_ok(
    link: Link,
    input_spec: InputSpec,
    workflow: Workflow,
    registry: Registry,
    problem: _Reporter,
    name: str,
) -> bool:
    source = workflow.nodes.get(link.node)
    if source is None:
        problem(f"links to missing node {link.node!r}", name)
        return False
    source_type = registry.get(source.type)
    if source_type is None:
        return False  # reported on the source node itself
    out_type = source_type.outputs.get(link.output)
    if out_type is None:
        outs = ", ".join(source_type.outputs) or "none"
        problem(
            f"node {link.node!r} ({source.type}) has no output "
            f"{link.output!r} (its outputs: {outs})",
            name,
        )
        return False
    if not compatible(out_type, input_spec.type):
        problem(f"expects {input_spec.type}, but {link.node}.{link.output} is {out_type}", name)
        return False
    return True


_NOT_A_LITERAL: Any = object()


def _literal(value: Any, input_spec: InputSpec, problem: _Reporter, name: str) -> Any:
    if isinstance(value, list):
        problem(
            "a list here is neither a link ([node_id, output_name]) nor a literal; "
            'write a literal list as {"value": [...]}',
            name,
        )
        return _NOT_A_LITERAL
    if isinstance(value, dict):
        if set(value) != {"value"}:
            problem('an object literal must be written {"value": ...}', name)
            return _NOT_A_LITERAL
        value = value["value"]
    if not input_spec.is_value:
        problem(f"expects a link from a {input_spec.type} output, got a literal {value!r}", name)
        return _NOT_A_LITERAL
    return value


def _targets(
    workflow: Workflow, registry: Registry, targets: Iterable[str] | None, problems: list[Problem]
) -> list[str]:
    """The requested targets (checked), or every output node."""
    if targets is not None:
        wanted = list(targets)
        for target in wanted:
            if target not in workflow.nodes:
                problems.append(
                    Problem(f"requested target {target!r} is not a node of the workflow")
                )
        return wanted
    wanted = [
        node_id
        for node_id, spec in workflow.nodes.items()
        if (nt := registry.get(spec.type)) is not None and nt.output_node
    ]
    if not wanted and not any(p.message.startswith("unknown node type") for p in problems):
        problems.append(
            Problem(
                "the workflow has no output node (such as SaveImage or PreviewImage), "
                "so running it would compute nothing"
            )
        )
    return wanted


def _make_plan(
    graph: nx.DiGraph, planned: dict[str, PlannedNode], wanted: list[str], workflow: Workflow
) -> Plan:
    needed = _ancestors_and_self(graph, wanted)
    sub = graph if len(needed) == graph.number_of_nodes() else graph.subgraph(needed).copy()
    order = list(nx.topological_sort(sub))
    consumers = dict.fromkeys(order, 0)
    for node_id in order:
        for link in planned[node_id].links.values():
            consumers[link.node] += 1
    node_types = {id(node.node_type): node.node_type for node in planned.values()}.values()
    has_lazy = any(node_type.lazy_inputs for node_type in node_types)
    if any(node_type.list_outputs for node_type in node_types):
        # list outputs make their consumers run once per item, and so on downstream
        for node_id in order:
            _mark_lists(planned[node_id], planned)
    deferred = _deferred(order, planned, set(wanted)) if has_lazy else frozenset()
    return Plan({n: planned[n] for n in order}, order, wanted, consumers, deferred, workflow)


def _mark_lists(node: PlannedNode, planned: dict[str, PlannedNode]) -> None:
    """Whether a node runs once per item of a list input (its sources are already marked)."""
    node_type = node.node_type
    node.mapped = any(
        link.output in planned[link.node].list_outputs
        for name, link in node.links.items()
        if name not in node_type.list_inputs
    )
    node.list_outputs = frozenset(node_type.outputs) if node.mapped else node_type.list_outputs


def _deferred(
    order: list[str], planned: dict[str, PlannedNode], targets: set[str]
) -> frozenset[str]:
    """Nodes whose every consumer takes them lazily or is itself deferred."""
    eager: set[str] = set(targets)
    for node_id in reversed(order):
        if node_id not in eager:
            continue
        node = planned[node_id]
        for name, link in node.links.items():
            if name not in node.node_type.lazy_inputs:
                eager.add(link.node)
    return frozenset(n for n in order if n not in eager)


class _Reporter:
    """Records problems of one node."""

    __slots__ = ("node_id", "node_type", "problems")

    def __init__(self, problems: list[Problem], node_id: str, node_type: str) -> None:
        self.problems, self.node_id, self.node_type = problems, node_id, node_type

    def __call__(self, message: str, input: str | None = None) -> None:
        self.problems.append(
            Problem(message, node=self.node_id, input=input, node_type=self.node_type)
        )


def _ancestors_and_self(graph: nx.DiGraph, targets: list[str]) -> set[str]:
    """Every node the targets depend on, in one walk however many targets there are."""
    seen = set(targets)
    stack = list(targets)
    pred = graph.pred
    while stack:
        for parent in pred[stack.pop()]:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _cycles(graph: nx.DiGraph, limit: int = 10) -> list[list[str]]:
    if nx.is_directed_acyclic_graph(graph):
        return []
    found: list[list[str]] = []
    for cycle in nx.simple_cycles(graph):
        found.append(cycle)
        if len(found) >= limit:
            break
    return found
