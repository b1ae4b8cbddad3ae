"""Property test: random and mutated workflows are either valid or refused with problems.

How many cases: the hypothesis profile (tests/core/conftest.py; fast by default)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from easel.core.graph import WorkflowError, validate
from tests.core.sample_nodes import registry, workflow

REGISTRY = registry()
TYPES = [*REGISTRY.nodes, "Nope", "", "show"]
NAMES = st.sampled_from(["a", "b", "c", "d", "value", "sum", "array", "seed", "text", "x"])
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
LINKS = st.lists(NAMES, min_size=2, max_size=2)
INPUT_VALUES = st.one_of(JSON_VALUES, LINKS, st.fixed_dictionaries({"value": JSON_VALUES}))
NODE = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES), "inputs": st.dictionaries(NAMES, INPUT_VALUES, max_size=4)}
)
WORKFLOWS = st.dictionaries(NAMES, NODE, max_size=6).map(workflow)
ANYTHING = st.one_of(
    JSON_VALUES,
    WORKFLOWS,
    st.dictionaries(
        st.sampled_from(["format", "version", "nodes", "ui", "extra"]), JSON_VALUES, max_size=5
    ),
)


def check(data) -> None:
    try:
        plan = validate(data, REGISTRY)
    except WorkflowError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.message
            if problem.input is not None:
                assert problem.node is not None
        return
    assert plan.targets and set(plan.order) <= set(data["nodes"])


@given(WORKFLOWS)
def test_random_workflows(data):
    check(data)


@given(ANYTHING)
def test_random_json_documents(data):
    check(data)


@given(st.text(max_size=80))
def test_random_text(text):
    check(text)


VALID = workflow(
    {
        "c": {"type": "Const", "inputs": {"value": 2}},
        "a": {"type": "Add", "inputs": {"a": ["c", "value"], "b": 3}},
        "s": {"type": "Show", "inputs": {"value": ["a", "sum"], "label": "x"}},
    }
)


@given(st.data())
def test_mutated_valid_workflow(data):
    wf = json.loads(json.dumps(VALID))
    for _ in range(data.draw(st.integers(1, 4))):
        node = data.draw(st.sampled_from(sorted(wf["nodes"]) or ["c"]))
        action = data.draw(st.sampled_from(["drop", "retype", "set", "link", "delete_input"]))
        spec = wf["nodes"].setdefault(node, {"type": "Const", "inputs": {}})
        if action == "drop":
            wf["nodes"].pop(node)
        elif action == "retype":
            spec["type"] = data.draw(st.sampled_from(TYPES))
        elif action == "set":
            spec.setdefault("inputs", {})[data.draw(NAMES)] = data.draw(INPUT_VALUES)
        elif action == "link":
            spec.setdefault("inputs", {})[data.draw(NAMES)] = [data.draw(NAMES), data.draw(NAMES)]
        elif spec.get("inputs"):
            spec["inputs"].pop(data.draw(st.sampled_from(sorted(spec["inputs"]))))
    check(wf)
