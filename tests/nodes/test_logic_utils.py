"""Boolean, Switch (only the chosen branch runs) and MathExpression (a safe evaluator)."""

from __future__ import annotations

from typing import Any

import pytest

from easel.core.executor import Executor
from easel.core.node import NodeError
from easel.core.plugins import load_plugins
from easel.nodes.math_expression import ExpressionError, MathExpression, evaluate


@pytest.fixture(scope="module")
def run() -> Any:
    executor = Executor(load_plugins(entry_points=False))

    def run(nodes: dict[str, Any], targets: list[str]) -> Any:
        workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
        return executor.run(workflow, targets=targets, keep_values=True)

    return run


@pytest.mark.parametrize("switch", [True, False])
def test_switch_runs_only_the_chosen_branch(run, switch) -> None:
    result = run(
        {
            "flag": {"type": "Boolean", "inputs": {"value": switch}},
            "yes": {"type": "MathExpression", "inputs": {"expression": "a * 2", "a": 21}},
            # The other branch would fail if it ran (a division by zero).
            "no": {"type": "MathExpression", "inputs": {"expression": "1 / a", "a": 0}},
            "pick": {
                "type": "Switch",
                "inputs": {
                    "switch": ["flag", "value"],
                    "on_true": ["yes", "int"] if switch else ["no", "float"],
                    "on_false": ["no", "float"] if switch else ["yes", "int"],
                },
            },
        },
        ["pick"],
    )
    assert result.ok, result.failures
    assert result.values["pick"]["output"] == 42
    assert "no" not in result.executed


def test_switch_with_one_branch_passes_it_whatever_the_switch(run) -> None:
    result = run(
        {
            "value": {"type": "String", "inputs": {"value": "only"}},
            "pick": {"type": "Switch", "inputs": {"switch": True, "on_false": ["value", "value"]}},
        },
        ["pick"],
    )
    assert result.values["pick"]["output"] == "only"


@pytest.mark.parametrize(
    ("expression", "names", "expected"),
    [
        ("(b - c) * (a - 1)", {"a": 3, "b": 10, "c": 4}, 12),
        ("4 * ceil((a - b * c + c - 1) / 4) + 1", {"a": 81, "b": 2, "c": 8}, 73),
        ("(a % 4 == 1) and ((b - 1) % 4 == 0)", {"a": 5, "b": 9}, True),
        ("(a + b) / 2000", {"a": 1000, "b": 3000}, 2.0),
        ("a % b if b > 0 else 0", {"a": 7, "b": 0}, 0),
        ("max(a, b) ** 2 - -1", {"a": 2, "b": 3}, 10),
        ("round(pi, 2) + floor(e) + sqrt(16)", {}, 9.14),
        ("1 < a <= 3 or not a", {"a": 3}, True),
        ("sum(values) / len_", {"a": 1, "b": 2, "len_": 3}, 1),
        ("pow(a, 2) + max(values)", {"a": 3, "b": 1}, 12),
        ("a * 2", {"a": True}, 2),  # a boolean input counts as 1
    ],
)
def test_expressions_of_the_templates(expression, names, expected) -> None:
    assert evaluate(expression, names) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "not allowed"),
        ("a.__class__", "not allowed"),
        ("[x for x in range(9)]", "not allowed"),
        ("open('f')", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("9 ** 9 ** 9", "too large"),
        ("pow(9, 99999)", "too large"),
        ("a +", "not a valid expression"),
        ("b + 1", "'b' is used but its input is not linked"),
        ("zz + 1", "unknown name 'zz'"),
        ("1 / 0", "cannot compute"),
        ("'text'", "not allowed"),
        ("a" + " + a" * 600, "over 1000"),
    ],
)
def test_what_the_evaluator_refuses(expression, reason) -> None:
    with pytest.raises(ExpressionError, match=reason):
        evaluate(expression, {"a": 1})


def test_the_node_gives_float_int_and_bool_and_names_the_input() -> None:
    assert MathExpression.call(None, {"expression": "a / b", "a": 7, "b": 2}) == {
        "float": 3.5,
        "int": 3,
        "bool": True,
    }
    with pytest.raises(NodeError) as caught:
        MathExpression.call(None, {"expression": "c * 2", "a": 1})
    assert caught.value.input == "expression" and "'c'" in caught.value.message
    with pytest.raises(NodeError, match="not a finite number"):
        MathExpression.call(None, {"expression": "a * 1e308 * 10", "a": 1})
    with pytest.raises(NodeError, match="empty"):
        MathExpression.call(None, {"expression": "  ", "a": 1})
    assert (
        MathExpression.call(None, {"expression": "sum(values)", "a": 1, "c": 2.5})["float"] == 3.5
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, (1.0, 1)),
        (7, (7.0, 7)),
        (2.9, (2.9, 2)),
        (-2.9, (-2.9, -2)),
        (" 12 ", (12.0, 12)),
        ("3.75", (3.75, 3)),
        ("1e3", (1000.0, 1000)),
    ],
)
def test_convert_number(value, expected) -> None:
    from easel.nodes.math_expression import ConvertNumber

    out = ConvertNumber.call(None, {"value": value})
    assert (out["float"], out["int"]) == expected
    assert type(out["int"]) is int


@pytest.mark.parametrize("value", ["", "ten", "inf", float("nan"), [1]])
def test_convert_number_refuses_what_is_not_a_finite_number(value) -> None:
    from easel.nodes.math_expression import ConvertNumber

    with pytest.raises(NodeError) as caught:
        ConvertNumber.call(None, {"value": value})
    assert caught.value.input == "value"
