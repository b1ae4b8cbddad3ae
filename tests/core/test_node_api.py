"""Node API v1: linked values in fingerprint/check, output checks, defaults, lazy inputs,
list mapping, hidden inputs, display names and per-output cache identity."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import easel
from easel.core.context import Context
from easel.core.executor import Executor, RunResult
from easel.core.graph import validate
from easel.core.node import NodeDeclarationError
from easel.core.plugins import load_plugins
from easel.core.status import NodeStatus, RunStatus
from tests.core.sample_nodes import registry, workflow

CALLS: Counter[str] = Counter()
Mask = easel.socket_type("TESTS.MASK")


def _file_fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    path = Path(inputs["path"])
    return path.read_text() if path.exists() else "missing"


@easel.node(outputs={"text": str}, fingerprint=_file_fingerprint)
def ApiReadFile(path: str) -> str:
    CALLS["ApiReadFile"] += 1
    return Path(path).read_text()


def _check_pair(ctx: Context, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    if inputs["low"] > inputs["high"]:
        return [("low", f"low ({inputs['low']}) is above high ({inputs['high']})")]
    return []


@easel.node(outputs={"span": float}, check=_check_pair)
def ApiSpan(low: float = 0.0, high: float = 1.0) -> float:
    return high - low


@easel.node(outputs={"text": str}, display_name="Path text")
def ApiPathText(text: str = "") -> str:
    return text


@easel.node(outputs={"value": float})
def ApiWrongType() -> Any:
    return "not a number"


@easel.node(outputs={"image": "IMAGE"})
def ApiMisspelt() -> Any:
    return {"imgae": 1}


def _pick(ctx: Context, inputs: dict[str, Any]) -> list[str]:
    return ["a"] if inputs["use_a"] else ["b"]


@easel.node(outputs={"value": float}, needs=_pick)
def ApiSwitch(
    use_a: bool = True,
    a: float = easel.Input(0.0, lazy=True),
    b: float = easel.Input(0.0, lazy=True),
) -> float:
    CALLS["ApiSwitch"] += 1
    return a if use_a else b


@easel.node(outputs={"value": float})
def ApiExpensive(value: float = 0.0) -> float:
    CALLS[f"ApiExpensive{value:g}"] += 1
    return value * 10


@easel.node(outputs={"values": float}, list_outputs=("values",))
def ApiRange(count: int = 3) -> list[float]:
    return [float(i) for i in range(count)]


@easel.node(outputs={"total": float})
def ApiSum(values: float = easel.Input(0.0, as_list=True)) -> float:
    return float(sum(values))


@easel.node(outputs={}, output_node=True, hidden=("workflow", "node_id", "extra_pnginfo"))
def ApiEmbed(
    value: float, workflow: Any = None, node_id: str = "", extra_pnginfo: Any = None
) -> dict[str, Any]:
    CALLS["ApiEmbed"] += 1
    return {
        "ui": {
            "node": node_id,
            "nodes": sorted(workflow["nodes"]),
            "value": value,
            "extra": extra_pnginfo,
        }
    }


@easel.node(
    outputs={"model": float, "clip": float}, output_depends={"clip": ("clip", "strength_clip")}
)
def ApiLora(
    model: float, clip: float, strength_model: float = 1.0, strength_clip: float = 1.0
) -> dict[str, float]:
    return {"model": model * strength_model, "clip": clip * strength_clip}


@easel.node(outputs={"value": float})
def ApiEncode(clip: float) -> float:
    CALLS["ApiEncode"] += 1
    return clip + 0.5


NODES = [
    ApiReadFile,
    ApiSpan,
    ApiPathText,
    ApiWrongType,
    ApiMisspelt,
    ApiSwitch,
    ApiExpensive,
    ApiRange,
    ApiSum,
    ApiEmbed,
    ApiLora,
    ApiEncode,
]


@pytest.fixture
def reg():
    CALLS.clear()
    out = registry()
    for node_type in NODES:
        out.add_node("api", node_type)
    return out


def test_fingerprint_sees_a_linked_path_and_a_changed_file_reruns(reg, tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text("first")
    wf = workflow(
        {
            "p": {"type": "ApiPathText", "inputs": {"text": str(path)}},
            "r": {"type": "ApiReadFile", "inputs": {"path": ["p", "text"]}},
        }
    )
    ex = Executor(reg)
    assert ex.run(wf, targets=["r"], keep_values=True).values["r"]["text"] == "first"
    assert ex.run(wf, targets=["r"]).cached == ["p", "r"]
    path.write_text("second")
    again = ex.run(wf, targets=["r"], keep_values=True)
    assert again.executed == ["r"] and again.values["r"]["text"] == "second"


def test_check_sees_linked_values_and_blames_the_input(reg):
    wf = workflow(
        {
            "c": {"type": "Const", "inputs": {"value": 5.0}},
            "s": {"type": "ApiSpan", "inputs": {"low": ["c", "value"], "high": 2.0}},
        }
    )
    result = Executor(reg).run(wf, targets=["s"])
    [failure] = result.failures
    assert (failure.node, failure.input, failure.message) == (
        "s",
        "low",
        "low (5.0) is above high (2.0)",
    )
    literal = workflow({"s": {"type": "ApiSpan", "inputs": {"low": 5.0, "high": 2.0}}})
    with pytest.raises(easel.core.graph.WorkflowError, match=r"low \(5.0\) is above high"):
        validate(literal, reg, ["s"])


def test_wrong_output_type_fails_the_node_that_returned_it(reg):
    wf = workflow(
        {"w": {"type": "ApiWrongType"}, "a": {"type": "Add", "inputs": {"a": ["w", "value"]}}}
    )
    result = Executor(reg).run(wf, targets=["a"])
    assert result.node_status == {"w": "failed", "a": "skipped"}
    assert result.failures[0].message == (
        "output 'value' should be FLOAT, but the node returned a str ('not a number')"
    )


def test_misspelt_output_key_is_refused(reg):
    result = Executor(reg).run(workflow({"m": {"type": "ApiMisspelt"}}), targets=["m"])
    assert result.failures[0].message == (
        "node function returned outputs ['imgae'], declared ['image'] (return {'image': value})"
    )


def test_object_socket_checks_come_from_the_plugin_that_owns_the_type():
    full = load_plugins(entry_points=False, environ={})
    full.add_node("api", ApiWrongImage)
    result = Executor(full).run(workflow({"w": {"type": "ApiWrongImage"}}), targets=["w"])
    assert result.failures[0].message.startswith(
        "output 'image' should be IMAGE, but the node returned a str"
    )


@easel.node(outputs={"image": "IMAGE"})
def ApiWrongImage() -> Any:
    return "a path, not pixels"


@pytest.mark.parametrize(
    ("declaration", "reason"),
    [
        ("x: float = easel.Input(50.0, ge=0, le=1)", "input 'x': default must be <= 1"),
        (
            "x: str = easel.Input('big', choices=['a', 'b'])",
            "input 'x': default 'big' is not one of",
        ),
    ],
)
def test_bad_defaults_are_refused_at_registration_naming_plugin_node_input(
    tmp_path, declaration, reason
):
    path = tmp_path / "defaults.py"
    path.write_text(
        "import easel\n\n"
        "@easel.node(outputs={'x': float})\n"
        f"def Bad({declaration}) -> float:\n    return 0.0\n\n"
        "@easel.hookimpl\ndef register_nodes(register):\n    register(Bad)\n"
    )
    reg = load_plugins([str(path)], entry_points=False, environ={})
    assert "Bad" not in reg.nodes
    [error] = reg.errors
    assert error.startswith(f"plugin 'defaults': node 'Bad', {reason}")


def test_lazy_input_runs_only_the_branch_the_node_asks_for(reg):
    wf = workflow(
        {
            "a": {"type": "ApiExpensive", "inputs": {"value": 1.0}},
            "b": {"type": "ApiExpensive", "inputs": {"value": 2.0}},
            "s": {
                "type": "ApiSwitch",
                "inputs": {"a": ["a", "value"], "b": ["b", "value"], "use_a": False},
            },
        }
    )
    ex = Executor(reg)
    result = ex.run(wf, targets=["s"], keep_values=True)
    assert result.values["s"]["value"] == 20.0
    assert result.node_status == {"a": "unused", "b": "executed", "s": "executed"}
    assert dict(CALLS) == {"ApiExpensive2": 1, "ApiSwitch": 1}
    wf["nodes"]["a"]["inputs"]["value"] = 3.0  # an unused branch changed: still a cache hit
    assert ex.run(wf, targets=["s"]).cached == ["b", "s"]


def test_lazy_input_declaration_needs_a_needs_function():
    with pytest.raises(NodeDeclarationError, match="lazy inputs \\['a'\\] need a `needs`"):

        @easel.node(outputs={"v": float})
        def NoNeeds(a: float = easel.Input(0.0, lazy=True)) -> float:
            return a


def test_list_output_maps_consumers_and_as_list_gathers(reg):
    wf = workflow(
        {
            "r": {"type": "ApiRange", "inputs": {"count": 4}},
            "e": {"type": "ApiExpensive", "inputs": {"value": ["r", "values"]}},
            "s": {"type": "ApiSum", "inputs": {"values": ["e", "value"]}},
            "one": {"type": "ApiSum", "inputs": {"values": 2.5}},
        }
    )
    result = Executor(reg).run(wf, targets=["s", "one"], keep_values=True)
    assert result.values["e"]["value"] == [0.0, 10.0, 20.0, 30.0]
    assert result.values["s"]["total"] == 60.0 and result.values["one"]["total"] == 2.5


def test_hidden_inputs_get_workflow_node_id_and_pnginfo(reg):
    wf = workflow(
        {
            "c": {"type": "Const", "inputs": {"value": 2.0}},
            "out": {"type": "ApiEmbed", "inputs": {"value": ["c", "value"]}},
        }
    )
    ex = Executor(reg)
    result = ex.run(wf, services={"extra_pnginfo": {"workflow": {"ui": 1}}})
    assert result.ui["out"] == {
        "node": "out",
        "nodes": ["c", "out"],
        "value": 2.0,
        "extra": {"workflow": {"ui": 1}},
    }
    assert "workflow" not in reg.nodes["ApiEmbed"].inputs
    assert ex.run(wf, services={"extra_pnginfo": {"workflow": {"ui": 1}}}).cached == ["c", "out"]
    wf["nodes"]["x"] = {"type": "Const"}  # the embedded workflow changed: the node re-runs
    assert ex.run(wf, targets=["out"]).executed == ["out"]


def test_display_name_is_in_the_schema(reg):
    assert reg.nodes["ApiPathText"].schema()["display_name"] == "Path text"
    assert reg.nodes["Const"].schema()["display_name"] == "Const"


def test_output_depends_keeps_clip_consumers_cached_when_model_strength_changes(reg):
    wf = workflow(
        {
            "m": {"type": "Const", "inputs": {"value": 1.0}},
            "c": {"type": "Const", "inputs": {"value": 2.0}},
            "lora": {
                "type": "ApiLora",
                "inputs": {"model": ["m", "value"], "clip": ["c", "value"], "strength_model": 0.5},
            },
            "enc": {"type": "ApiEncode", "inputs": {"clip": ["lora", "clip"]}},
            "use": {"type": "Add", "inputs": {"a": ["lora", "model"]}},
        }
    )
    ex = Executor(reg)
    ex.run(wf, targets=["enc", "use"])
    wf["nodes"]["lora"]["inputs"]["strength_model"] = 0.25
    again = ex.run(wf, targets=["enc", "use"])
    assert again.executed == ["lora", "use"] and "enc" in again.cached
    wf["nodes"]["lora"]["inputs"]["strength_clip"] = 0.25
    assert "enc" in ex.run(wf, targets=["enc", "use"]).executed


def test_output_depends_must_name_real_outputs_and_inputs():
    with pytest.raises(NodeDeclarationError, match="unknown inputs \\['nope'\\]"):

        @easel.node(outputs={"v": float}, output_depends={"v": ("nope",)})
        def Bad(a: float = 0.0) -> float:
            return a


def test_timings_come_back_apart_from_cached_outputs(reg):
    ex = Executor(reg)
    wf = workflow(
        {"c": {"type": "Const"}, "e": {"type": "ApiExpensive", "inputs": {"value": ["c", "value"]}}}
    )
    result = ex.run(wf, targets=["e"])
    assert set(result.timings) == {"c", "e"} and all(t >= 0 for t in result.timings.values())
    assert all("__seconds__" not in outputs for outputs, _ in ex.cache._entries.values())
    assert ex.run(wf, targets=["e"]).timings == {}


def test_status_vocabulary_and_results_round_trip_through_json(reg):
    wf = workflow(
        {"f": {"type": "Fail", "inputs": {"value": -1.0, "message": "no"}}, "c": {"type": "Const"}}
    )
    result = Executor(reg).run(wf, targets=["f", "c"])
    assert result.status is RunStatus.FAILED and result.node_status["c"] is NodeStatus.EXECUTED
    back = RunResult.from_json(result.to_json())
    assert back.to_json() == result.to_json()
    assert back.failures[0].to_json() == {
        "node": "f",
        "node_type": "Fail",
        "input": "value",
        "message": "no",
    }
