"""Workflow validation: every problem reported at once, each located and explained."""

from __future__ import annotations

import pytest

from easel.core.graph import WorkflowError, parse_workflow, validate
from tests.core.sample_nodes import registry, workflow


@pytest.fixture(scope="module")
def reg():
    return registry()


def problems(reg, data) -> list:
    with pytest.raises(WorkflowError) as info:
        validate(data, reg)
    return info.value.problems


def test_valid_workflow_gives_plan_in_dependency_order(reg):
    plan = validate(
        workflow(
            {
                "show": {"type": "Show", "inputs": {"value": ["add", "sum"]}},
                "add": {"type": "Add", "inputs": {"a": ["c", "value"], "b": 2}},
                "c": {"type": "Const", "inputs": {"value": 3}},
                "unused": {"type": "Const", "inputs": {}},
            }
        ),
        reg,
    )
    assert plan.order == ["c", "add", "show"]
    assert plan.targets == ["show"]
    assert plan.nodes["add"].literals == {"b": 2.0}


def test_not_json_reports_line_and_column(reg):
    [problem] = problems(reg, '{\n  "format": "easel.workflow",\n  "nodes": {,}\n}')
    assert "not valid JSON" in problem.message
    assert "line 3" in problem.message and "column" in problem.message


def test_unknown_top_level_key_refused(reg):
    [problem] = problems(reg, {**workflow({}), "extra": 1})
    assert "unknown key 'extra'" in problem.message


def test_wrong_format_and_version(reg):
    found = problems(reg, {"format": "other", "version": 2, "nodes": {}})
    text = " ".join(p.message for p in found)
    assert "format" in text and "version" in text


def test_unknown_type_suggests_closest(reg):
    [problem] = problems(reg, workflow({"s": {"type": "Shwo", "inputs": {"value": 1}}}))
    assert problem.node == "s"
    assert "unknown node type 'Shwo'" in problem.message and "'Show'" in problem.message


def test_missing_required_input(reg):
    [problem] = problems(reg, workflow({"s": {"type": "Show", "inputs": {}}}))
    assert (problem.node, problem.input) == ("s", "value")
    assert "missing required input" in problem.message


def test_link_to_missing_node_and_missing_output(reg):
    found = problems(
        reg,
        workflow(
            {
                "c": {"type": "Const"},
                "s": {"type": "Show", "inputs": {"value": ["nope", "value"]}},
                "t": {"type": "Show", "inputs": {"value": ["c", "nothing"]}},
            }
        ),
    )
    by_node = {p.node: p for p in found}
    assert "missing node 'nope'" in by_node["s"].message
    assert "no output 'nothing'" in by_node["t"].message
    assert "value" in by_node["t"].message  # lists the outputs that exist


def test_wrong_type_on_link(reg):
    [problem] = problems(
        reg,
        workflow(
            {
                "n": {"type": "Noise"},
                "s": {"type": "Show", "inputs": {"value": ["n", "array"]}},
            }
        ),
    )
    assert problem.input == "value"
    assert "expects FLOAT" in problem.message and "IMAGE" in problem.message


def test_literal_wrong_type_and_out_of_range(reg):
    found = problems(
        reg,
        workflow(
            {
                "c": {"type": "Const", "inputs": {"value": "abc"}},
                "a": {"type": "Add", "inputs": {"a": ["c", "value"], "b": 5000}},
                "s": {"type": "Show", "inputs": {"value": ["a", "sum"]}},
            }
        ),
    )
    by_node = {p.node: p for p in found}
    assert by_node["c"].input == "value" and "number" in by_node["c"].message
    assert by_node["a"].input == "b" and "<= 1000" in by_node["a"].message


def test_literal_for_link_only_input_and_bare_list(reg):
    found = problems(
        reg,
        workflow(
            {
                "m": {"type": "Mean", "inputs": {"array": 3}},
                "s": {"type": "Show", "inputs": {"value": ["m", "value"], "label": [1, 2]}},
            }
        ),
    )
    by_node = {p.node: p for p in found}
    assert "expects a link from a IMAGE output" in by_node["m"].message
    assert '{"value": [...]}' in by_node["s"].message


def test_choices_enforced(reg):
    [problem] = problems(
        reg,
        workflow(
            {
                "p": {"type": "Pick", "inputs": {"mode": "c"}},
                "s": {"type": "Show", "inputs": {"value": 1, "label": ["p", "text"]}},
            }
        ),
    )
    assert problem.input == "mode" and "'a'" in problem.message


def test_cycle_path_printed(reg):
    found = problems(
        reg,
        workflow(
            {
                "a": {"type": "Add", "inputs": {"a": ["b", "sum"]}},
                "b": {"type": "Add", "inputs": {"a": ["a", "sum"]}},
                "s": {"type": "Show", "inputs": {"value": ["a", "sum"]}},
            }
        ),
    )
    [cycle] = [p for p in found if p.message.startswith("cycle")]
    assert cycle.message in ("cycle: a -> b -> a", "cycle: b -> a -> b")


def test_no_output_node(reg):
    [problem] = problems(reg, workflow({"c": {"type": "Const"}}))
    assert "no output node" in problem.message


def test_every_problem_reported_at_once(reg):
    found = problems(
        reg,
        workflow(
            {
                "x": {"type": "Nope"},
                "c": {"type": "Const", "inputs": {"value": "q", "bogus": 1}},
                "s": {"type": "Show", "inputs": {}},
            }
        ),
    )
    assert len(found) == 4
    message = str(WorkflowError(found))
    assert "4 problems" in message and "node 'c' (Const), input 'bogus'" in message


def test_ui_is_accepted_and_literal_list_wrapper(reg):
    plan = validate(
        {
            **workflow(
                {
                    "p": {"type": "Pick", "inputs": {"text": {"value": "hello"}}},
                    "s": {"type": "Show", "inputs": {"value": 1, "label": ["p", "text"]}},
                }
            ),
            "ui": {"positions": {"p": [0, 0]}},
        },
        reg,
    )
    assert plan.nodes["p"].literals["text"] == "hello"


def test_parse_workflow_round_trip():
    data = workflow({"c": {"type": "Const", "inputs": {"value": 2}}})
    assert parse_workflow(data).to_json()["nodes"]["c"]["inputs"] == {"value": 2}
