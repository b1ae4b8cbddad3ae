"""Reroute passes any value through, so a workflow runs the same with one in a link."""

from __future__ import annotations

from typing import Any

from easel.core.executor import Executor
from easel.core.plugins import load_plugins


def run(nodes: dict[str, Any]) -> Any:
    executor = Executor(load_plugins(entry_points=False, environ={}))
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    return executor.run(workflow, targets=["text"], keep_values=True)


def test_reroute_passes_the_value_through() -> None:
    direct = run(
        {
            "a": {"type": "String", "inputs": {"value": "hello"}},
            "text": {"type": "ConcatenateText", "inputs": {"a": ["a", "value"], "b": "!"}},
        }
    )
    rerouted = run(
        {
            "a": {"type": "String", "inputs": {"value": "hello"}},
            "dot": {"type": "Reroute", "inputs": {"input": ["a", "value"]}},
            "text": {"type": "ConcatenateText", "inputs": {"a": ["dot", "output"], "b": "!"}},
        }
    )
    assert direct.status == rerouted.status == "succeeded", (direct.failures, rerouted.failures)
    assert rerouted.values["text"] == direct.values["text"]
    assert "hello!" in str(direct.values["text"])
