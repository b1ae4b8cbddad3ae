"""Bypassed and muted nodes (ComfyUI's modes 4 and 2) in planning and in a run."""

from __future__ import annotations

import pytest

from easel.core.cache import OutputCache
from easel.core.executor import Executor
from easel.core.graph import WorkflowError, parse_workflow, validate
from tests.core.sample_nodes import CALLS, registry, workflow


@pytest.fixture
def ex():
    CALLS.clear()
    return Executor(registry(), OutputCache(max_bytes=16 * 1024**2))


def graph(add_mode=None, mean_mode=None, a=None) -> dict:
    add = {"type": "Add", "inputs": {"a": a if a is not None else ["mean", "value"], "b": 100.0}}
    mean = {"type": "Mean", "inputs": {"array": ["noise", "array"]}}
    if add_mode:
        add["mode"] = add_mode
    if mean_mode:
        mean["mode"] = mean_mode
    return workflow(
        {
            "noise": {"type": "Noise", "inputs": {"seed": 3}},
            "mean": mean,
            "add": add,
            "show": {"type": "Show", "inputs": {"value": ["add", "sum"]}},
            "const": {"type": "Const", "inputs": {"value": 7.0}},
            "show2": {"type": "Show", "inputs": {"value": ["const", "value"]}},
        }
    )


def test_a_bypassed_node_passes_its_first_input_of_the_output_type(ex):
    normal = ex.run(graph())
    assert normal.ui["show"]["value"] > 100
    CALLS.clear()
    bypassed = ex.run(graph(add_mode="bypass"))
    assert bypassed.status == "succeeded"
    assert CALLS["Add"] == 0 and "add" not in bypassed.node_status
    mean = bypassed.ui["show"]["value"]
    assert 0.0 < mean < 1.0  # Mean's value, not Mean + 100
    assert normal.ui["show"]["value"] == pytest.approx(mean + 100)


def test_a_bypassed_node_passes_a_literal_and_chains_of_bypasses(ex):
    assert ex.run(graph(add_mode="bypass", a=4.5)).ui["show"]["value"] == 4.5
    both = ex.run(graph(add_mode="bypass", mean_mode="bypass"))
    # Mean has no FLOAT input to pass on: Show loses its required value and is dropped.
    assert "show" not in both.node_status and both.ui["show2"]["value"] == 7.0


def test_a_muted_node_drops_what_needs_it_and_the_rest_runs(ex):
    result = ex.run(graph(mean_mode="mute"))
    assert result.status == "succeeded"
    assert set(result.node_status) == {"const", "show2"}
    assert CALLS["Noise"] == 0 and CALLS["Add"] == 0


def test_everything_muted_is_refused_clearly():
    wf = workflow(
        {
            "const": {"type": "Const", "inputs": {"value": 1.0}},
            "show": {"type": "Show", "inputs": {"value": ["const", "value"]}, "mode": "mute"},
        }
    )
    with pytest.raises(WorkflowError, match="no output node"):
        validate(wf, registry())


def test_the_mode_is_kept_in_the_format_and_left_out_when_running():
    wf = parse_workflow(graph(add_mode="bypass"))
    data = wf.to_json()
    assert data["nodes"]["add"]["mode"] == "bypass"
    assert "mode" not in data["nodes"]["mean"]
    plan = validate(wf, registry())
    assert plan.workflow is wf  # what a SaveImage embeds keeps the bypass
    assert plan.nodes["show"].links["value"].node == "mean"
    with pytest.raises(WorkflowError, match="mode"):
        parse_workflow(workflow({"c": {"type": "Const", "mode": "sleep"}}))
    targets = validate(wf, registry(), targets=["show", "add"]).targets
    assert targets == ["show"]
