"""The executor: only what is needed runs, events, caching across runs, failures, cancel."""

from __future__ import annotations

import threading

import pytest

from easel.core import events as ev
from easel.core.cache import OutputCache
from easel.core.context import CancelToken
from easel.core.executor import Executor
from tests.core.sample_nodes import CALLS, registry, workflow


@pytest.fixture
def ex():
    CALLS.clear()
    return Executor(registry(), OutputCache(max_bytes=64 * 1024**2))


def chain(seed: int = 1, b: float = 2.0) -> dict:
    return workflow(
        {
            "noise": {"type": "Noise", "inputs": {"seed": seed}},
            "mean": {"type": "Mean", "inputs": {"array": ["noise", "array"]}},
            "add": {"type": "Add", "inputs": {"a": ["mean", "value"], "b": b}},
            "show": {"type": "Show", "inputs": {"value": ["add", "sum"]}},
            "unused": {"type": "Const", "inputs": {"value": 9}},
        }
    )


def test_runs_only_what_outputs_need_and_emits_events(ex):
    seen = []
    result = ex.run(chain(), on_event=lambda e: seen.append((e.type, e.node_id)))
    assert result.status == "succeeded"
    assert "unused" not in result.node_status and CALLS["Const"] == 0
    assert result.executed == ["noise", "mean", "add", "show"]
    assert seen[0] == (ev.RUN_STARTED, None) and seen[-1][0] == ev.RUN_FINISHED
    assert [n for t, n in seen if t == ev.NODE_FINISHED] == ["noise", "mean", "add", "show"]
    assert 2.0 < result.ui["show"]["value"] < 3.0


def test_identical_rerun_executes_zero_nodes(ex):
    ex.run(chain())
    calls = sum(CALLS.values())
    events = []
    result = ex.run(chain(), on_event=lambda e: events.append(e.type))
    assert result.executed == [] and len(result.cached) == 4
    assert sum(CALLS.values()) == calls
    assert events.count(ev.NODE_CACHED) == 4


def test_changed_seed_reruns_only_downstream_and_old_seed_is_a_hit(ex):
    first = ex.run(chain(seed=1))
    second = ex.run(chain(seed=2))
    assert second.executed == ["noise", "mean", "add", "show"]
    changed_b = ex.run(chain(seed=2, b=5.0))
    assert changed_b.executed == ["add", "show"] and changed_b.cached == ["noise", "mean"]
    back = ex.run(chain(seed=1))
    assert back.executed == [] and back.ui == first.ui


def test_ui_section_never_affects_caching(ex):
    ex.run(chain())
    moved = {**chain(), "ui": {"positions": {"noise": [10, 20]}}}
    assert ex.run(moved).executed == []


def test_identical_subgraphs_in_different_workflows_share_results(ex):
    ex.run(chain())
    other = workflow(
        {
            "n2": {"type": "Noise", "inputs": {"seed": 1}},
            "m2": {"type": "Mean", "inputs": {"array": ["n2", "array"]}},
            "out": {"type": "Show", "inputs": {"value": ["m2", "value"], "label": "other"}},
        }
    )
    result = ex.run(other)
    assert result.cached == ["n2", "m2"] and result.executed == ["out"]


def test_non_deterministic_nodes_always_run_with_their_dependents(ex):
    wf = workflow(
        {
            "clock": {"type": "Clock"},
            "add": {"type": "Add", "inputs": {"a": ["clock", "value"]}},
            "show": {"type": "Show", "inputs": {"value": ["add", "sum"]}},
        }
    )
    ex.run(wf)
    again = ex.run(wf)
    assert again.executed == ["clock", "add", "show"]


def test_failure_stops_dependents_only_and_success_stays_cached(ex):
    wf = workflow(
        {
            "c": {"type": "Const", "inputs": {"value": 1}},
            "bad": {"type": "Fail", "inputs": {"value": ["c", "value"], "message": "kaput"}},
            "after": {"type": "Show", "inputs": {"value": ["bad", "value"]}},
            "good": {"type": "Show", "inputs": {"value": ["c", "value"], "label": "ok"}},
        }
    )
    events = []
    result = ex.run(wf, on_event=events.append)
    assert result.status == "failed"
    assert result.node_status == {
        "c": "executed",
        "bad": "failed",
        "after": "skipped",
        "good": "executed",
    }
    [failure] = result.failures
    assert failure.node == "bad" and failure.node_type == "Fail"
    assert failure.message == "RuntimeError: kaput" and "Traceback" in failure.traceback
    failed = next(e for e in events if e.type == ev.NODE_FAILED)
    assert failed.data["message"] == "RuntimeError: kaput" and failed.data["traceback"]
    # Fixing the failing node resumes from the cache.
    wf["nodes"]["bad"] = {"type": "Add", "inputs": {"a": ["c", "value"]}}
    wf["nodes"]["after"]["inputs"]["value"] = ["bad", "sum"]
    fixed = ex.run(wf)
    assert fixed.status == "succeeded" and fixed.cached == ["c", "good"]


def test_node_error_names_its_input(ex):
    wf = workflow(
        {
            "bad": {"type": "Fail", "inputs": {"value": -1, "message": "negative"}},
            "s": {"type": "Show", "inputs": {"value": ["bad", "value"]}},
        }
    )
    [failure] = ex.run(wf).failures
    assert failure.input == "value"
    assert str(failure) == "node 'bad' (Fail), input 'value': negative"


def test_linked_value_out_of_range_fails_with_input_name(ex):
    wf = workflow(
        {
            "c": {"type": "Const", "inputs": {"value": 5000}},
            "a": {"type": "Add", "inputs": {"a": 0, "b": ["c", "value"]}},
            "s": {"type": "Show", "inputs": {"value": ["a", "sum"]}},
        }
    )
    [failure] = ex.run(wf).failures
    assert (failure.node, failure.input) == ("a", "b") and "1000" in failure.message


def test_progress_events_and_cancel_inside_a_node(ex):
    token = CancelToken()
    steps = []

    def on_event(event):
        if event.type == ev.NODE_PROGRESS:
            steps.append(event.data["step"])
            if event.data["step"] == 3:
                token.cancel("user asked")

    wf = workflow(
        {
            "slow": {"type": "Slow", "inputs": {"steps": 50, "delay": 0.001}},
            "s": {"type": "Show", "inputs": {"value": ["slow", "value"]}},
        }
    )
    events = []
    result = ex.run(wf, cancel=token, on_event=lambda e: (events.append(e.type), on_event(e)))
    assert result.status == "cancelled"
    assert steps == [1, 2, 3]
    assert events[-1] == ev.RUN_CANCELLED
    assert result.node_status == {"slow": "cancelled", "s": "cancelled"}
    assert ex.run(wf).status == "succeeded"  # nothing half-done was cached


def test_cancel_between_nodes(ex):
    token = CancelToken()

    def on_event(event):
        if event.type == ev.NODE_FINISHED and event.node_id == "noise":
            token.cancel()

    result = ex.run(chain(), cancel=token, on_event=on_event)
    assert result.status == "cancelled"
    assert result.node_status["noise"] == "executed" and result.node_status["show"] == "cancelled"


def test_targets_run_only_their_ancestors(ex):
    result = ex.run(chain(), targets=["mean"], keep_values=True)
    assert result.executed == ["noise", "mean"]
    assert isinstance(result.values["mean"]["value"], float)


@pytest.mark.parametrize("workers", [2, 4])
def test_parallel_branches_give_the_same_results(workers):
    nodes = {}
    for i in range(12):
        nodes[f"s{i}"] = {"type": "Slow", "inputs": {"value": i, "steps": 3, "delay": 0.005}}
        nodes[f"a{i}"] = {"type": "Add", "inputs": {"a": [f"s{i}", "value"], "b": i}}
        nodes[f"o{i}"] = {"type": "Show", "inputs": {"value": [f"a{i}", "sum"]}}
    nodes["bad"] = {"type": "Fail", "inputs": {}}
    nodes["obad"] = {"type": "Show", "inputs": {"value": ["bad", "value"]}}
    serial = Executor(registry()).run(workflow(nodes))
    threads_seen = set()

    def on_event(event):
        threads_seen.add(threading.current_thread().name)

    parallel = Executor(registry(), max_workers=workers).run(workflow(nodes), on_event=on_event)
    assert parallel.ui == serial.ui
    assert parallel.node_status == serial.node_status
    assert any(name.startswith("easel-node") for name in threads_seen)


def test_cache_bound_evicts_least_recently_used():
    CALLS.clear()
    one_entry = 64 * 64 * 4
    ex = Executor(registry(), OutputCache(max_bytes=int(one_entry * 2.5)))
    for seed in (1, 2, 3):
        ex.run(chain(seed=seed))
    assert ex.cache.bytes <= ex.cache.max_bytes
    assert ex.cache.stats.evictions > 0
    noise_calls = CALLS["Noise"]
    ex.run(chain(seed=3))
    assert CALLS["Noise"] == noise_calls  # most recent survives
    ex.run(chain(seed=1))
    assert CALLS["Noise"] == noise_calls + 1  # oldest was evicted
